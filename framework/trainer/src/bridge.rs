//! Moving numbers between candle tensors and the plain buffers of optimizers and
//! strategies, and the loss.
use candle_core::{DType, Device, Tensor, Var};
use nas_core::{NasError, Result};
use nas_data::Batch;

/// Converts a candle error.
pub fn terr(e: candle_core::Error) -> NasError {
    NasError::Tensor(e.to_string())
}

/// A tensor's values as `f64`, flattened.
pub fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    t.flatten_all()
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(terr)
}

/// Overwrites a variable with flat `f64` values.
pub fn set_var(v: &Var, values: Vec<f64>) -> Result<()> {
    let t = Tensor::from_vec(values, v.dims(), v.device())
        .and_then(|t| t.to_dtype(v.dtype()))
        .map_err(terr)?;
    v.set(&t).map_err(terr)
}

/// The images and labels of a batch as tensors.
pub fn batch_tensors(
    b: &Batch,
    shape: (usize, usize, usize),
    device: &Device,
    dtype: DType,
) -> Result<(Tensor, Tensor)> {
    let (c, h, w) = shape;
    let x = Tensor::from_slice(&b.images, (b.n, c, h, w), device)
        .and_then(|t| t.to_dtype(dtype))
        .map_err(terr)?;
    let y = Tensor::from_slice(&b.labels, b.n, device).map_err(terr)?;
    Ok((x, y))
}

/// Mean cross-entropy and the number of correct predictions.
pub fn loss_and_correct(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, usize)> {
    let loss = candle_nn::loss::cross_entropy(logits, labels).map_err(terr)?;
    let pred = logits.argmax(1).map_err(terr)?;
    let correct = pred
        .eq(labels)
        .and_then(|m| m.to_dtype(DType::F64))
        .and_then(|m| m.sum_all())
        .and_then(|s| s.to_scalar::<f64>())
        .map_err(terr)?;
    Ok((loss, correct as usize))
}

/// A scalar tensor's value as `f64`.
pub fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .map_err(terr)
}
