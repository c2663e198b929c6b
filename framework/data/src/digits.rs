//! The embedded default data set: the UCI "optical recognition of handwritten digits"
//! test set as shipped with scikit-learn (`sklearn/datasets/data/digits.csv.gz`, CC BY 4.0;
//! provenance in `shared/data/SOURCES.md`): 1797 grey 8x8 images with values 0..16 and
//! 10 classes. Small enough to ship inside the library and to run a whole search in seconds.
//!
//! **Split:** the set has no official train/test split, so this module fixes one: per
//! class, the images' indices are shuffled with a fixed seed ([`DIGITS_SPLIT_SEED`], stream
//! `data.digits.split`) and the first `round(0.8 * n_class)` go to training, the rest to
//! test (stratified 80/20: 1438 train / 359 test). Both parts keep the file's order.
//! Pixels are divided by 16; mean and std are computed from the whole training part.
use std::path::Path;

use nas_core::{component_rng, NasError, Result};

use crate::source::{gunzip_if_needed, read_file};
use crate::split::shuffle;
use crate::{DataSplits, Dataset};

/// The gzipped CSV, embedded.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../assets/digits.csv.gz");

/// Seed of the fixed train/test split.
pub const DIGITS_SPLIT_SEED: u64 = 0;

/// Share of each class that goes to training.
pub const DIGITS_TRAIN_PORTION: f64 = 0.8;

/// Parses the digits CSV (no header; 64 pixel values 0..16, then the label 0..9 per row)
/// into a data set with pixels scaled to `[0, 1]`; `file` names the source in errors.
pub fn parse_digits_csv(file: &str, text: &[u8]) -> Result<Dataset> {
    let text = std::str::from_utf8(text)
        .map_err(|e| NasError::data(file, format!("not UTF-8 text: {e}")))?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = |m: String| NasError::data(file, format!("line {}: {m}", ln + 1));
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 65 {
            return Err(at(format!(
                "{} columns, expected 65 (64 pixels and a label)",
                fields.len()
            )));
        }
        for f in &fields[..64] {
            let v: f32 = f
                .parse()
                .map_err(|_| at(format!("pixel `{f}` is not a number")))?;
            if !(0.0..=16.0).contains(&v) {
                return Err(at(format!("pixel {v} is outside 0..16")));
            }
            images.push(v / 16.0);
        }
        let label: f32 = fields[64]
            .parse()
            .map_err(|_| at(format!("bad label `{}`", fields[64])))?;
        if !(0.0..10.0).contains(&label) || label.fract() != 0.0 {
            return Err(at(format!("bad label {label}: expected 0..9")));
        }
        labels.push(label as u32);
    }
    let ds = Dataset {
        name: "digits".into(),
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 10,
        images,
        labels,
        files: None,
    };
    if ds.is_empty() {
        return Err(NasError::data(file, "no rows"));
    }
    ds.validate(file)?;
    Ok(ds)
}

/// Indices of a stratified split: per class, a seeded shuffle, then the first
/// `round(portion * n_class)` to the first part. Both parts are returned sorted.
pub fn stratified_split(
    labels: &[u32],
    num_classes: usize,
    portion: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = component_rng(seed, "data.digits.split");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for c in 0..num_classes as u32 {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        shuffle(&mut idx, &mut rng);
        let k = (portion * idx.len() as f64).round() as usize;
        a.extend_from_slice(&idx[..k]);
        b.extend_from_slice(&idx[k..]);
    }
    a.sort_unstable();
    b.sort_unstable();
    (a, b)
}

/// The digits data set, split as in the module doc. `csv` overrides the embedded copy with
/// a file in the same format (plain or gzipped).
pub fn load_digits(
    csv: Option<&Path>,
    limit_train: Option<usize>,
    limit_test: Option<usize>,
) -> Result<DataSplits> {
    let (label, bytes) = match csv {
        Some(p) => (p.display().to_string(), gunzip_if_needed(p, read_file(p)?)?),
        None => {
            let name = Path::new("<embedded digits.csv.gz>");
            (
                name.display().to_string(),
                gunzip_if_needed(name, DIGITS_CSV_GZ.to_vec())?,
            )
        }
    };
    let all = parse_digits_csv(&label, &bytes)?;
    let (tr, te) = stratified_split(
        &all.labels,
        all.num_classes,
        DIGITS_TRAIN_PORTION,
        DIGITS_SPLIT_SEED,
    );
    let mut train = all.subset(&tr)?;
    let mut test = all.subset(&te)?;
    let (mean, std) = train.channel_stats();
    train.truncate(limit_train.unwrap_or(usize::MAX));
    test.truncate(limit_test.unwrap_or(usize::MAX));
    Ok(DataSplits {
        train,
        test,
        mean,
        std,
    })
}
