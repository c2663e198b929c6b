//! The one integration-test binary of this crate: tests on tiny files the tests write themselves (and a few JPEG fixtures in
//! `testdata/`), checked against hand-worked values.
mod augment;
mod cifar;
mod digits;
mod folder;
mod idx;
mod image_folder;
mod loader;
mod registry;
mod split;

use std::path::Path;

use nas_data::Dataset;

/// A data set of `n` images of shape `c x h x w` whose pixel `k` of image `i` is
/// `(i * 10 + k) / 1000` (distinct, in [0, 1] for small sizes); labels `i % classes`.
pub fn ramp_dataset(n: usize, c: usize, h: usize, w: usize, classes: usize) -> Dataset {
    let len = c * h * w;
    Dataset {
        name: "ramp".into(),
        channels: c,
        height: h,
        width: w,
        num_classes: classes,
        images: (0..n * len)
            .map(|j| ((j / len) * 10 + j % len) as f32 / 1000.0)
            .collect(),
        labels: (0..n).map(|i| (i % classes) as u32).collect(),
        files: None,
    }
}

/// Writes `files` (path inside the archive, bytes) as a gzipped tar at `path`.
pub fn write_tar_gz(path: &Path, files: &[(String, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &bytes[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

/// Gzips `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The message of a [`nas_core::NasError::Data`], with its file; panics on other errors.
pub fn data_error<T: std::fmt::Debug>(r: nas_core::Result<T>) -> (String, String) {
    match r {
        Err(nas_core::NasError::Data { file, message }) => (file, message),
        other => panic!("expected a data error, got {other:?}"),
    }
}
