use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data_error;
use nas_data::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/image_folder")
}

fn load(extra: serde_json::Value) -> nas_core::Result<DataSplits> {
    let mut p = serde_json::json!({"root": root(), "size": 16, "resize": 20});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    load_dataset("image_folder", &p)
}

/// Pillow's pixels for each fixture (testdata/README.md).
fn pillow() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/image_folder_pil.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["images"].as_object().unwrap().clone()
}

#[test]
fn lists_classes_and_files_without_decoding_and_interleaves_the_classes() {
    let d = load(serde_json::json!({})).unwrap();
    assert!(d.train.is_streamed() && d.test.is_streamed());
    assert!(d.train.images.is_empty());
    assert_eq!(
        (d.train.channels, d.train.height, d.train.width),
        (3, 16, 16)
    );
    assert_eq!(d.train.num_classes, 2);
    assert_eq!(d.train.labels, vec![0, 1, 0, 1, 0, 1]);
    assert_eq!(d.test.labels, vec![0, 1]);
    assert_eq!(d.mean, image_folder::IMAGENET_MEAN.to_vec());
    assert_eq!(d.std, image_folder::IMAGENET_STD.to_vec());
    let small = load(serde_json::json!({"limit_train": 3})).unwrap();
    assert_eq!(small.train.labels, vec![0, 1, 0]);
}

#[test]
fn decoded_images_match_pillow_with_torchvision_s_evaluation_transform() {
    let d = load(serde_json::json!({})).unwrap();
    let want = pillow();
    let files = d.train.files.as_ref().unwrap();
    let mut checked = 0;
    for (i, path) in files.paths.iter().enumerate() {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let expected: Vec<f64> = want[&rel]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = d.train.pixels(i).unwrap();
        assert_eq!(got.len(), expected.len(), "{rel}");
        let diffs: Vec<f64> = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (*a as f64 - b).abs() * 255.0)
            .collect();
        let max = diffs.iter().cloned().fold(0.0, f64::max);
        let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
        // Pillow rounds to 8 bits after each resampling pass and decodes with libjpeg; we
        // stay in f32 and decode with zune-jpeg: a level or two apart. A wrong filter,
        // crop offset or channel order is off by tens of levels.
        assert!(
            max <= 4.0 && mean <= 1.0,
            "{rel}: max {max}, mean {mean} levels"
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn a_streamed_loader_gives_the_batches_of_the_same_images_held_in_memory() {
    let d = load(serde_json::json!({})).unwrap();
    let mut memory = Dataset {
        files: None,
        ..d.train.clone()
    };
    for i in 0..d.train.len() {
        memory.images.extend_from_slice(&d.train.pixels(i).unwrap());
    }
    memory.validate("memory copy").unwrap();
    let aug = Augment::darts_cifar(4);
    let mk = |data: Dataset| {
        Loader::new(
            Arc::new(data),
            (0..6).collect(),
            4,
            true,
            aug,
            d.mean.clone(),
            d.std.clone(),
            3,
        )
        .unwrap()
    };
    let (mut a, mut b) = (mk(d.train.clone()), mk(memory));
    for _ in 0..5 {
        assert_eq!(a.next_batch().unwrap(), b.next_batch().unwrap());
    }
    // Subsets stream too, in the subset's order.
    let sub = d.train.subset(&[5, 0]).unwrap();
    assert_eq!(sub.labels, vec![1, 0]);
    assert_eq!(sub.pixels(1).unwrap(), d.train.pixels(0).unwrap());
}

#[test]
fn bad_params_and_files_are_errors_naming_the_key_or_the_file() {
    let err = |v: serde_json::Value| match load_dataset("image_folder", &v) {
        Err(nas_core::NasError::InvalidParams { path, message, .. }) => (path, message),
        other => panic!("expected a params error, got {other:?}"),
    };
    assert_eq!(err(serde_json::json!({})).0, "root");
    assert_eq!(
        err(serde_json::json!({"root": root(), "size": 16, "resize": 8})).0,
        "resize"
    );
    assert_eq!(
        err(serde_json::json!({"root": root(), "sise": 16})).0,
        "sise"
    );
    let (file, _) = data_error(load(serde_json::json!({"test_dir": "test"})));
    assert!(file.ends_with("test"), "{file}");

    // A file that is not a JPEG is listed (nothing is decoded at load) and named by the
    // batch that reaches it.
    let tmp = tempfile::tempdir().unwrap();
    for split in ["train/cat", "val/cat"] {
        std::fs::create_dir_all(tmp.path().join(split)).unwrap();
        std::fs::copy(
            root().join("train/cat/00.JPEG"),
            tmp.path().join(split).join("a.JPEG"),
        )
        .unwrap();
    }
    std::fs::write(tmp.path().join("train/cat/b.JPEG"), b"not a jpeg").unwrap();
    let d = load_dataset(
        "image_folder",
        &serde_json::json!({"root": tmp.path(), "size": 16, "resize": 20}),
    )
    .unwrap();
    let mut l = Loader::new(
        Arc::new(d.train),
        vec![0, 1],
        2,
        false,
        Augment::none(),
        d.mean,
        d.std,
        0,
    )
    .unwrap();
    let (file, _) = data_error(l.next_batch());
    assert!(file.ends_with("b.JPEG"), "{file}");
}

#[test]
fn the_shape_is_known_without_files_when_the_classes_are_given() {
    let p = serde_json::json!({"root": "/nonexistent", "classes": 1000, "size": 224});
    assert_eq!(known_shape("image_folder", &p), Some([3, 224, 224, 1000]));
    assert_eq!(
        known_shape("image_folder", &serde_json::json!({"root": "/x"})),
        None
    );
    assert_eq!(
        known_shape("cifar100", &serde_json::Value::Null),
        Some([3, 32, 32, 100])
    );
    assert_eq!(
        known_shape("fashion_mnist", &serde_json::Value::Null),
        Some([1, 28, 28, 10])
    );
    assert_eq!(known_shape("no_such_set", &serde_json::Value::Null), None);
    // The listed data agree with the shape the params promise.
    let d = load(serde_json::json!({"classes": 2})).unwrap();
    let p = serde_json::json!({"root": root(), "classes": 2, "size": 16});
    let [c, h, w, k] = known_shape("image_folder", &p).unwrap();
    assert_eq!(
        (c, h, w, k),
        (
            d.train.channels,
            d.train.height,
            d.train.width,
            d.train.num_classes
        )
    );
}
