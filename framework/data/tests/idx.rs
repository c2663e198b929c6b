use std::path::Path;

use crate::{data_error, gzip};
use nas_data::idx::*;
use nas_data::*;

#[test]
fn the_idx_encoders_write_the_published_layout() {
    // The MNIST database's file format, written out by hand: magic, sizes big-endian, data.
    assert_eq!(
        encode_idx_images(2, 1, 3, &[1, 2, 3, 4, 5, 6]),
        [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        encode_idx_labels(&[9, 0, 7]),
        [0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 7]
    );
}

/// Writes a tiny Fashion-MNIST layout: train 3 images of 2x3 (gzipped), test 2 (plain).
fn write_tiny(dir: &Path) {
    let train_px: Vec<u8> = (0..18).map(|v| v * 15).collect(); // 0, 15, ..., 255
    std::fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        gzip(&encode_idx_images(3, 2, 3, &train_px)),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&encode_idx_labels(&[9, 0, 4])),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        encode_idx_images(2, 2, 3, &[255; 12]),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        encode_idx_labels(&[1, 2]),
    )
    .unwrap();
}

fn load(dir: &Path, extra: serde_json::Value) -> nas_core::Result<DataSplits> {
    let mut p = serde_json::json!({"root": dir.to_str().unwrap()});
    if let serde_json::Value::Object(m) = extra {
        p.as_object_mut().unwrap().extend(m);
    }
    load_dataset("fashion_mnist", &p)
}

#[test]
fn reads_tiny_idx_files_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path());
    let d = load(dir.path(), serde_json::json!({})).unwrap();
    assert_eq!((d.train.channels, d.train.height, d.train.width), (1, 2, 3));
    assert_eq!(d.train.labels, [9, 0, 4]);
    assert_eq!(d.test.labels, [1, 2]);
    // pixel k of the training file is 15 k / 255: image 1, pixel 2 is byte 8 -> 120/255
    assert_eq!(d.train.image(1).unwrap()[2], 120.0 / 255.0);
    assert_eq!(d.train.images[17], 1.0);
    assert!(d.test.images.iter().all(|&v| v == 1.0));
    assert_eq!(d.mean, FASHION_MNIST_MEAN);
    let d = load(
        dir.path(),
        serde_json::json!({"limit_train": 2, "limit_test": 5}),
    )
    .unwrap();
    assert_eq!(
        (d.train.len(), d.test.len(), d.train.images.len()),
        (2, 2, 12)
    );
}

#[test]
fn parser_errors_name_the_file_and_the_fault() {
    let f = Path::new("x-idx");
    // wrong magic (a label file given as images)
    let (file, m) = data_error(parse_idx_images(f, &encode_idx_labels(&[1, 2])));
    assert!(file == "x-idx" && m.contains("magic"), "{m}");
    // truncated: the header promises 2*2*2 = 8 pixels, 7 are there
    let (_, m) = data_error(parse_idx_images(f, &encode_idx_images(2, 2, 2, &[0; 7])));
    assert!(m.contains("wrong length") && m.contains("truncated"), "{m}");
    // trailing bytes are wrong too
    let (_, m) = data_error(parse_idx_images(f, &encode_idx_images(1, 1, 1, &[0; 2])));
    assert!(m.contains("wrong length"), "{m}");
    // a header cut short
    let (_, m) = data_error(parse_idx_images(f, &[0, 0, 8, 3, 0, 0]));
    assert!(m.contains("header"), "{m}");
    // label 10 with 10 classes
    let (_, m) = data_error(parse_idx_labels(f, &encode_idx_labels(&[3, 10]), 10));
    assert!(m.contains("bad label 10") && m.contains("index 1"), "{m}");
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path());
    // missing: names the plain name and the .gz alternative
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let (file, m) = data_error(load(dir.path(), serde_json::json!({})));
    assert!(
        file.ends_with("t10k-labels-idx1-ubyte") && m.contains("not found"),
        "{file}: {m}"
    );
    // corrupt gzip: cut the stream in half
    let p = dir.path().join("train-images-idx3-ubyte.gz");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let (file, m) = data_error(load(dir.path(), serde_json::json!({})));
    assert!(
        file.ends_with("train-images-idx3-ubyte.gz") && m.contains("gzip"),
        "{file}: {m}"
    );
    // label count differs from the image count
    write_tiny(dir.path());
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        encode_idx_labels(&[1, 2, 3]),
    )
    .unwrap();
    let (file, m) = data_error(load(dir.path(), serde_json::json!({})));
    assert!(
        file.ends_with("t10k-labels-idx1-ubyte") && m.contains("3 labels for 2 images"),
        "{m}"
    );
}

/// The real files, where the Debian package `dataset-fashion-mnist` is installed
/// (`cargo test -p nas-data -- --ignored`).
#[test]
#[ignore]
fn real_fashion_mnist() {
    let d = load_dataset("fashion_mnist", &serde_json::Value::Null).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (60000, 10000));
    assert_eq!((d.train.height, d.train.width), (28, 28));
    // First test labels, read from the file with Python: 9 2 1 1 6 1 4 6 5 7
    assert_eq!(d.test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(d.train.class_counts(), [6000; 10]);
    let (mean, std) = d.train.channel_stats();
    assert!(
        (mean[0] - FASHION_MNIST_MEAN[0]).abs() < 1e-5
            && (std[0] - FASHION_MNIST_STD[0]).abs() < 1e-5
    );
}
