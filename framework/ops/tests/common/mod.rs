//! Shared test helpers: the PyTorch golden file, tensor conversion, normwise comparison,
//! random inputs and central finite differences.
#![allow(dead_code)]
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Path of the golden file (the checkout's parent holds `shared/`).
pub const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/golden/darts_ops.safetensors"
);

/// The golden tensors, decoded to f64 vectors with their shapes, and the case specs.
pub struct Golden {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
    pub cases: Vec<serde_json::Value>,
}

impl Golden {
    pub fn load() -> Golden {
        let bytes = std::fs::read(GOLDEN).unwrap_or_else(|e| panic!("cannot read {GOLDEN}: {e}"));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("golden file parses");
        let mut tensors = HashMap::new();
        for name in st.names() {
            let view = st.tensor(name).expect("tensor");
            assert_eq!(view.dtype(), safetensors::Dtype::F64, "{name} is not f64");
            let data = view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            tensors.insert(name.to_string(), (view.shape().to_vec(), data));
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("metadata");
        let golden = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("golden"))
            .expect("golden metadata key");
        let golden: serde_json::Value =
            serde_json::from_str(golden).expect("golden metadata is JSON");
        let cases = golden["cases"].as_array().expect("cases list").clone();
        Golden { tensors, cases }
    }

    pub fn get(&self, name: &str) -> &(Vec<usize>, Vec<f64>) {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("golden tensor {name} missing"))
    }

    pub fn tensor(&self, name: &str, dtype: DType) -> Tensor {
        let (shape, data) = self.get(name);
        Tensor::from_vec(data.clone(), shape.as_slice(), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    pub fn var(&self, name: &str, dtype: DType) -> Var {
        Var::from_tensor(&self.tensor(name, dtype)).unwrap()
    }

    pub fn cases_of_kind(&self, kind: &str) -> Vec<serde_json::Value> {
        self.cases
            .iter()
            .filter(|c| c["kind"] == kind)
            .cloned()
            .collect()
    }
}

pub fn usize_of(v: &serde_json::Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("case field {key} missing in {v}")) as usize
}

/// A tensor's values as f64.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Normwise relative error `max|a - r| / max|r|` (absolute when `r` is all zeros).
pub fn normwise(a: &[f64], r: &[f64]) -> f64 {
    assert_eq!(a.len(), r.len(), "length mismatch");
    let num = a
        .iter()
        .zip(r)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let den = r.iter().map(|y| y.abs()).fold(0.0, f64::max);
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

#[track_caller]
pub fn assert_close(what: &str, a: &[f64], r: &[f64], tol: f64) {
    let e = normwise(a, r);
    assert!(e <= tol, "{what}: normwise error {e:.3e} > {tol:.1e}");
}

/// Like [`assert_close`], but relative to `max(max|r|, floor)`: for results that may cancel to
/// nearly zero (batch-norm input gradients of tiny batches).
#[track_caller]
pub fn assert_close_floor(what: &str, a: &[f64], r: &[f64], tol: f64, floor: f64) {
    let num = a
        .iter()
        .zip(r)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let den = r.iter().map(|y| y.abs()).fold(floor, f64::max);
    assert!(
        num <= tol * den,
        "{what}: error {num:.3e} > {tol:.1e} * {den:.3e}"
    );
}

/// Checks a tensor's shape and values against a golden tensor.
#[track_caller]
pub fn check(g: &Golden, name: &str, t: &Tensor, tol: f64) {
    let (shape, data) = g.get(name);
    assert_eq!(t.dims(), shape.as_slice(), "{name}: shape");
    assert_close(name, &values(t), data, tol);
}

/// Tolerance for a dtype (golden README: f64 ~1e-12 relative, f32 1e-5 normwise).
pub fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-10,
        _ => 1e-5,
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform(-1, 1) values.
pub fn uniform(r: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| r.random_range(-1.0..1.0)).collect()
}

/// Distinct values in random order (no ties anywhere, for max-pool tests).
pub fn distinct(r: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|i| (i as f64 - n as f64 / 2.0) / 64.0).collect();
    for i in (1..n).rev() {
        let j = r.random_range(0..=i);
        v.swap(i, j);
    }
    v
}

pub fn tensor(data: &[f64], shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Central finite differences of `L(p) = sum(f(p) * gy)` with respect to every element of
/// `p` (f64), step `h`.
pub fn finite_diff(p: &[f64], h: f64, gy: &[f64], f: &dyn Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let mut q = p.to_vec();
    (0..p.len())
        .map(|i| {
            q[i] = p[i] + h;
            let lp: f64 = f(&q).iter().zip(gy).map(|(a, b)| a * b).sum();
            q[i] = p[i] - h;
            let lm: f64 = f(&q).iter().zip(gy).map(|(a, b)| a * b).sum();
            q[i] = p[i];
            (lp - lm) / (2.0 * h)
        })
        .collect()
}

/// `sum(y * gy)` as a scalar tensor, the loss every gradient test differentiates.
pub fn loss(y: &Tensor, gy: &Tensor) -> Tensor {
    (y * gy).unwrap().sum_all().unwrap()
}
