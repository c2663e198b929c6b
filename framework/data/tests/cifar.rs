use std::path::Path;

use crate::{data_error, write_tar_gz};
use nas_data::cifar::*;
use nas_data::*;

/// A CIFAR-10 record: label, then the R, G, B planes; pixel value = (plane*7 + p) % 256
/// shifted by `seed`, so that planes are told apart.
fn record(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut r = labels.to_vec();
    r.extend((0..CIFAR_IMAGE_BYTES).map(|k| {
        ((k / 1024) as u8)
            .wrapping_mul(7)
            .wrapping_add(seed)
            .wrapping_add(k as u8)
    }));
    r
}

fn write_cifar10(dir: &Path, per_batch: usize) {
    for b in 1..=5u8 {
        let bytes: Vec<u8> = (0..per_batch)
            .flat_map(|i| record(&[(b + i as u8) % 10], b * 10 + i as u8))
            .collect();
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let test: Vec<u8> = (0..per_batch)
        .flat_map(|i| record(&[9 - i as u8], 200 + i as u8))
        .collect();
    std::fs::write(dir.join("test_batch.bin"), test).unwrap();
}

#[test]
fn cifar10_records_are_chw_and_batches_concatenate() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 2);
    let root = dir.path().to_str().unwrap();
    let d = load_dataset("cifar10", &serde_json::json!({"root": root})).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (10, 2));
    // batch b, record i has label (b + i) % 10: 1 2 2 3 3 4 4 5 5 6
    assert_eq!(d.train.labels, [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
    assert_eq!(d.test.labels, [9, 8]);
    // image 3 = batch 2, record 1, seed 21: red (0, 0) = 21, green (0, 0) = 7 + 21 + 1024 % 256
    // = 28, blue (0, 1) = 14 + 21 + 2049 % 256 = 36 -> CHW offsets 0, 1024, 2049.
    let img = d.train.image(3).unwrap();
    assert_eq!(img[0], 21.0 / 255.0);
    assert_eq!(img[1024], 28.0 / 255.0);
    assert_eq!(img[2049], 36.0 / 255.0);
    assert_eq!(d.mean, CIFAR10_MEAN);
    // limit_train = 3 stops inside the second batch
    let d = load_dataset(
        "cifar10",
        &serde_json::json!({"root": root, "limit_train": 3}),
    )
    .unwrap();
    assert_eq!(d.train.labels, [1, 2, 2]);
}

#[test]
fn cifar10_from_the_official_tar_gz_layout() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&inner).unwrap();
    write_cifar10(&inner, 1);
    let direct = load_dataset(
        "cifar10",
        &serde_json::json!({"root": inner.to_str().unwrap()}),
    )
    .unwrap();
    // The parent directory works too.
    let parent = load_dataset(
        "cifar10",
        &serde_json::json!({"root": dir.path().to_str().unwrap()}),
    )
    .unwrap();
    assert_eq!(direct, parent);
    let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&inner)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                format!("cifar-10-batches-bin/{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    let tgz = dir.path().join("cifar-10-binary.tar.gz");
    write_tar_gz(&tgz, &files);
    let packed = load_dataset(
        "cifar10",
        &serde_json::json!({"root": tgz.to_str().unwrap()}),
    )
    .unwrap();
    assert_eq!(direct, packed);
}

#[test]
fn cifar100_uses_the_fine_label() {
    let dir = tempfile::tempdir().unwrap();
    // (coarse, fine) = (3, 42), (19, 99)
    let train: Vec<u8> = [record(&[3, 42], 0), record(&[19, 99], 1)].concat();
    std::fs::write(dir.path().join("train.bin"), train).unwrap();
    std::fs::write(dir.path().join("test.bin"), record(&[0, 7], 2)).unwrap();
    let d = load_dataset(
        "cifar100",
        &serde_json::json!({"root": dir.path().to_str().unwrap()}),
    )
    .unwrap();
    assert_eq!(
        (d.train.labels.clone(), d.test.labels.clone()),
        (vec![42, 99], vec![7])
    );
    assert_eq!(d.train.num_classes, 100);
    assert_eq!(d.train.image(1).unwrap()[0], 1.0 / 255.0);
}

#[test]
fn cifar_errors_name_the_file() {
    // truncated: one byte short of two records
    let two = [record(&[1], 0), record(&[2], 0)].concat();
    let (f, m) = data_error(parse_cifar_records(
        "b.bin",
        &two[..two.len() - 1],
        CIFAR10,
        usize::MAX,
    ));
    assert!(
        f == "b.bin" && m.contains("wrong length") && m.contains("3073"),
        "{m}"
    );
    // bad labels: 10 in CIFAR-10, coarse 20 in CIFAR-100
    let (_, m) = data_error(parse_cifar_records(
        "b.bin",
        &record(&[10], 0),
        CIFAR10,
        usize::MAX,
    ));
    assert!(m.contains("bad label 10"), "{m}");
    let (_, m) = data_error(parse_cifar_records(
        "c.bin",
        &record(&[20, 5], 0),
        CIFAR100,
        usize::MAX,
    ));
    assert!(m.contains("bad label 20") && m.contains("byte 0"), "{m}");
    // a missing batch
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 1);
    std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
    let (f, m) = data_error(load_dataset(
        "cifar10",
        &serde_json::json!({"root": dir.path().to_str().unwrap()}),
    ));
    assert!(
        f.ends_with("data_batch_4.bin") && m.contains("not found"),
        "{f}: {m}"
    );
    // a missing root
    let (f, _) = data_error(load_dataset(
        "cifar100",
        &serde_json::json!({"root": "/nonexistent/c100"}),
    ));
    assert_eq!(f, "/nonexistent/c100");
}
