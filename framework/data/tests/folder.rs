use std::path::{Path, PathBuf};

use crate::{data_error, write_tar_gz};
use nas_data::folder::*;
use nas_data::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// A binary PPM (P6) written by `djpeg -pnm`: returns the RGB bytes of a 32x32 image.
fn read_ppm(name: &str) -> Vec<u8> {
    let b = std::fs::read(fixtures().join(name)).unwrap();
    assert!(b.starts_with(b"P6\n32 32\n255\n"));
    b[13..].to_vec()
}

#[test]
fn jpeg_decoding_agrees_with_libjpeg() {
    for (jpg, ppm) in [
        (
            "cifar10-jpg/train/airplane/0001.jpg",
            "train-airplane-0001.djpeg.ppm",
        ),
        ("cifar10-jpg/test/bird/0001.jpg", "test-bird-0001.djpeg.ppm"),
    ] {
        let bytes = std::fs::read(fixtures().join(jpg)).unwrap();
        let img = decode_jpeg(jpg, &bytes).unwrap();
        assert_eq!((img.height, img.width), (32, 32));
        let want = read_ppm(ppm);
        assert_eq!(img.pixels.len(), want.len());
        // Decoders may differ by rounding in the IDCT and in chroma upsampling: on average
        // well under a level, at a few sharp chroma edges by up to about 11 levels (seen
        // with zune-jpeg 0.4.21). A wrong channel order or layout would be off by tens.
        let diffs: Vec<i32> = img
            .pixels
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .collect();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        let max = *diffs.iter().max().unwrap();
        assert!(
            mean < 1.0 && max <= 16,
            "{jpg}: mean |diff| {mean}, max {max}"
        );
    }
    // djpeg's first pixel of train/airplane/0001.jpg is (120, 117, 108).
    assert_eq!(
        read_ppm("train-airplane-0001.djpeg.ppm")[..3],
        [120, 117, 108]
    );
}

/// The fixture tree as (relative path, bytes).
fn fixture_files() -> Vec<(String, Vec<u8>)> {
    [
        "train/airplane/0001.jpg",
        "train/airplane/0002.jpg",
        "train/bird/0001.jpg",
        "test/airplane/0001.jpg",
        "test/bird/0001.jpg",
    ]
    .iter()
    .map(|p| {
        (
            p.to_string(),
            std::fs::read(fixtures().join("cifar10-jpg").join(p)).unwrap(),
        )
    })
    .collect()
}

#[test]
fn folder_and_tar_gz_give_the_same_interleaved_data_set() {
    let root = fixtures().join("cifar10-jpg");
    let d = load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": root.to_str().unwrap()}),
    )
    .unwrap();
    // Classes sorted: airplane = 0, bird = 1. Interleaved: airplane/0001, bird/0001, airplane/0002.
    assert_eq!(d.train.labels, [0, 1, 0]);
    assert_eq!(d.test.labels, [0, 1]);
    assert_eq!(
        (
            d.train.channels,
            d.train.height,
            d.train.width,
            d.train.num_classes
        ),
        (3, 32, 32, 2)
    );
    // CHW: the first pixel's red, green and blue sit 1024 apart; compare with libjpeg.
    let ppm = read_ppm("train-airplane-0001.djpeg.ppm");
    let img = d.train.image(0).unwrap();
    for c in 0..3 {
        let want = ppm[c] as f32 / 255.0;
        assert!((img[c * 1024] - want).abs() <= 8.0 / 255.0, "channel {c}");
    }
    // The same tree inside a .tar.gz, under a leading folder as archives often have it.
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("c10.tar.gz");
    let files: Vec<(String, Vec<u8>)> = fixture_files()
        .into_iter()
        .map(|(p, b)| (format!("cifar10/{p}"), b))
        .collect();
    write_tar_gz(&tgz, &files);
    let packed = load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": tgz.to_str().unwrap()}),
    )
    .unwrap();
    assert_eq!(packed, d);
    let small = load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": tgz.to_str().unwrap(), "limit_train": 2, "limit_test": 1}),
    )
    .unwrap();
    assert_eq!(
        (small.train.labels.clone(), small.test.labels.clone()),
        (vec![0, 1], vec![0])
    );
    assert_eq!(small.train.images[..], d.train.images[..2 * 3072]);
}

#[test]
fn folder_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = fixture_files();
    // A corrupt JPEG: cut in half.
    let half = files[2].1.len() / 2;
    files[2].1.truncate(half);
    for (p, b) in &files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b).unwrap();
    }
    let root = dir.path().to_str().unwrap();
    let (f, m) = data_error(load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": root}),
    ));
    assert!(
        f.ends_with("train/bird/0001.jpg") && m.contains("JPEG"),
        "{f}: {m}"
    );
    // A test class that training does not have.
    std::fs::write(
        dir.path().join("train/bird/0001.jpg"),
        &fixture_files()[2].1,
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("test/cat")).unwrap();
    let (f, m) = data_error(load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": root}),
    ));
    assert!(f.ends_with("test/cat") && m.contains("cat"), "{f}: {m}");
    // A missing split directory, and a missing archive.
    std::fs::remove_dir_all(dir.path().join("test")).unwrap();
    let (f, m) = data_error(load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": root}),
    ));
    assert!(f.ends_with("test") && m.contains("not found"), "{f}: {m}");
    let (f, _) = data_error(load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": "/nonexistent/x.tar.gz"}),
    ));
    assert_eq!(f, "/nonexistent/x.tar.gz");
    // A truncated archive.
    let tgz = dir.path().join("t.tar.gz");
    write_tar_gz(&tgz, &fixture_files());
    let b = std::fs::read(&tgz).unwrap();
    std::fs::write(&tgz, &b[..b.len() / 2]).unwrap();
    let (f, m) = data_error(load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": tgz.to_str().unwrap()}),
    ));
    assert!(
        f.ends_with("t.tar.gz") && m.contains("truncated"),
        "{f}: {m}"
    );
}

/// The whole shared JPEG copy of CIFAR-10 (`cargo test -p nas-data -- --ignored`).
#[test]
#[ignore]
fn shared_cifar10_jpg_tarball() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10-jpg/cifar10-jpg-q75.tar.gz");
    let d = load_dataset(
        "cifar10_folder",
        &serde_json::json!({"root": root.to_str().unwrap()}),
    )
    .unwrap();
    assert_eq!((d.train.len(), d.test.len()), (50000, 10000));
    assert_eq!(d.train.class_counts(), [5000; 10]);
    assert_eq!(d.test.class_counts(), [1000; 10]);
    // Close to the published CIFAR-10 figures (JPEG q75 changes them a little).
    let (mean, _) = d.train.channel_stats();
    for c in 0..3 {
        assert!((mean[c] - d.mean[c]).abs() < 0.01, "{mean:?}");
    }
}
