use nas_data::digits::*;
use nas_data::*;

#[test]
fn embedded_digits_split_is_stratified_80_20() {
    let d = load_dataset("digits", &serde_json::Value::Null).unwrap();
    // Class sizes of the UCI test set (1797 images): 178 182 177 183 181 182 181 179 174 180;
    // round(0.8 * n) per class: 142 146 142 146 145 146 145 143 139 144 = 1438, test 359.
    assert_eq!(
        d.train.class_counts(),
        [142, 146, 142, 146, 145, 146, 145, 143, 139, 144]
    );
    assert_eq!(
        d.test.class_counts(),
        [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    );
    assert_eq!((d.train.len(), d.test.len()), (1438, 359));
    assert_eq!((d.train.channels, d.train.height, d.train.width), (1, 8, 8));
    // Fixed: the same every time (and the parts are disjoint: together they are the file).
    let again = load_dataset("digits", &serde_json::Value::Null).unwrap();
    assert_eq!(again, d);
    // Mean/std from the training part: the whole file's pixel mean is 4.884 / 16 = 0.3053
    // and std 6.017 / 16 = 0.3761 (computed independently with Python over the CSV);
    // an 80% stratified sample must be close.
    assert!((d.mean[0] - 0.3053).abs() < 0.005, "{:?}", d.mean);
    assert!((d.std[0] - 0.3761).abs() < 0.005, "{:?}", d.std);
    // Limits keep the first N of each part and do not change the figures.
    let small = load_dataset(
        "digits",
        &serde_json::json!({"limit_train": 10, "limit_test": 3}),
    )
    .unwrap();
    assert_eq!((small.train.len(), small.test.len()), (10, 3));
    assert_eq!(small.train.images[..], d.train.images[..640]);
    assert_eq!((small.mean, small.std), (d.mean, d.std));
}

#[test]
fn embedded_csv_parses_as_the_file_says() {
    let text =
        nas_data::source::gunzip_if_needed(std::path::Path::new("x"), DIGITS_CSV_GZ.to_vec())
            .unwrap();
    let all = parse_digits_csv("digits", &text).unwrap();
    assert_eq!(all.len(), 1797);
    // First row of the file: 0,0,5,13,9,1,0,0,... label 0.
    let want: Vec<f32> = [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
        .iter()
        .map(|v| v / 16.0)
        .collect();
    assert_eq!(&all.image(0).unwrap()[..8], &want[..]);
    assert_eq!(all.labels[..3], [0, 1, 2]);
}

#[test]
fn stratified_split_keeps_class_shares() {
    // 10 of class 0, 5 of class 1: round(8) and round(4) to the first part.
    let labels: Vec<u32> = [vec![0; 10], vec![1; 5]].concat();
    let (a, b) = stratified_split(&labels, 2, 0.8, 1);
    assert_eq!(a.iter().filter(|&&i| labels[i] == 0).count(), 8);
    assert_eq!(a.iter().filter(|&&i| labels[i] == 1).count(), 4);
    assert_eq!(a.len() + b.len(), 15);
    assert!(a.iter().all(|i| !b.contains(i)));
}

#[test]
fn bad_digits_files_name_the_line() {
    let row = |label: &str| format!("{}{label}\n", "1,".repeat(64));
    let (_, m) = super::data_error(parse_digits_csv(
        "f.csv",
        row("3").replace("1,1,", "1,").as_bytes(),
    ));
    assert!(m.contains("line 1") && m.contains("columns"), "{m}");
    let (_, m) = super::data_error(parse_digits_csv(
        "f.csv",
        (row("3") + &row("10")).as_bytes(),
    ));
    assert!(m.contains("line 2") && m.contains("label"), "{m}");
    let (f, m) = super::data_error(parse_digits_csv(
        "f.csv",
        row("3").replacen('1', "17", 1).as_bytes(),
    ));
    assert!(f == "f.csv" && m.contains("17"), "{m}");
}
