use nas_core::NasError;
use nas_data::*;

#[test]
fn unknown_names_and_bad_params() {
    let e = load_dataset("mnist", &serde_json::Value::Null).unwrap_err();
    assert!(matches!(e, NasError::UnknownComponent { .. }));
    assert!(e.to_string().contains("fashion_mnist"), "{e}");
    for (params, key) in [
        (serde_json::json!({"limit_train": 0}), "limit_train"),
        (serde_json::json!({"limit_test": -1}), "limit_test"),
        (serde_json::json!({"limit_train": "ten"}), "limit_train"),
    ] {
        match load_dataset("digits", &params) {
            Err(NasError::InvalidParams { path, .. }) => assert_eq!(path, key),
            other => panic!("{other:?}"),
        }
    }
    let e = load_dataset("digits", &serde_json::json!({"download": true})).unwrap_err();
    assert!(e.to_string().contains("download"), "{e}");
}

#[test]
fn infos_cover_every_name_with_defaults() {
    let infos = dataset_infos();
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, dataset_names());
    assert_eq!(
        names,
        [
            "cifar10",
            "cifar100",
            "cifar10_folder",
            "digits",
            "fashion_mnist",
            "image_folder"
        ]
    );
    for i in &infos {
        let want = if i.name == "image_folder" { 10 } else { 3 };
        assert_eq!(i.params.len(), want, "{}", i.name);
        for p in &i.params {
            assert!(i.defaults.get(&p.name).is_some(), "{}", p.name);
        }
    }
    assert_eq!(
        infos[4].defaults["root"],
        "/usr/share/datasets/fashion-mnist"
    );
}

#[test]
fn digits_csv_root_replaces_the_embedded_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.csv");
    // 10 rows of one class each for classes 0, 1: round(0.8 * 5) = 4 train per class.
    let rows: String = (0..10)
        .map(|i| format!("{}{}\n", "8,".repeat(64), i % 2))
        .collect();
    std::fs::write(&p, rows).unwrap();
    let d = load_dataset("digits", &serde_json::json!({"root": p.to_str().unwrap()})).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (8, 2));
    assert!(d.train.images.iter().all(|&v| v == 0.5));
    // constant pixels: std falls back to 1
    assert_eq!((d.mean.clone(), d.std.clone()), (vec![0.5], vec![1.0]));
    let (f, m) = super::data_error(load_dataset(
        "digits",
        &serde_json::json!({"root": "/nonexistent.csv"}),
    ));
    assert!(f == "/nonexistent.csv" && m.contains("not found"));
}

#[test]
fn dataset_helpers() {
    let d = super::ramp_dataset(5, 1, 2, 2, 2);
    d.validate("ramp").unwrap();
    assert_eq!(d.class_counts(), [3, 2]);
    let s = d.subset(&[4, 0]).unwrap();
    assert_eq!(s.labels, [0, 0]);
    assert_eq!(s.image(0).unwrap(), d.image(4).unwrap());
    assert!(d.subset(&[5]).is_err());
    // stats over pixels {0,1,2,3}/1000 + 10 i/1000, i = 0..5: mean (1.5 + 20)/1000 = 0.0215
    let (mean, std) = d.channel_stats();
    assert!((mean[0] - 0.0215).abs() < 1e-7);
    // variance = var(k) + var(10 i) = 1.25 + 200 -> std = sqrt(201.25)/1000
    assert!((std[0] - 201.25f32.sqrt() / 1000.0).abs() < 1e-6);
    let mut bad = d.clone();
    bad.labels[1] = 2;
    assert!(bad
        .validate("x")
        .unwrap_err()
        .to_string()
        .contains("label 2"));
    let mut bad = d;
    bad.images.pop();
    assert!(bad.validate("x").is_err());
}
