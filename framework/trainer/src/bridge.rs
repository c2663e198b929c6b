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

/// The values of several tensors as `f64` buffers, flattened. On the CPU each is read where
/// it lies; off the CPU (a GPU) all of them come over in one transfer ([`to_f64_gathered`]),
/// not one synchronising copy per tensor: a supernet has a thousand and more parameters.
pub fn to_f64_all(ts: &[&Tensor]) -> Result<Vec<Vec<f64>>> {
    if ts.iter().all(|t| t.device().is_cpu()) {
        ts.iter().map(|t| to_f64(t)).collect()
    } else {
        to_f64_gathered(ts)
    }
}

/// [`to_f64_all`]'s one-transfer path (any device): the tensors flattened, concatenated and
/// converted to `f64` where they are ([`nas_ops::concat_f64`]: one launch on a GPU), copied
/// once, split on the host.
pub(crate) fn to_f64_gathered(ts: &[&Tensor]) -> Result<Vec<Vec<f64>>> {
    if ts.is_empty() {
        return Ok(Vec::new());
    }
    let all = nas_ops::concat_f64(ts)
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(terr)?;
    let mut out = Vec::with_capacity(ts.len());
    let mut start = 0;
    for t in ts {
        let n = t.elem_count();
        out.push(all[start..start + n].to_vec());
        start += n;
    }
    Ok(out)
}

/// Overwrites variables with flat `f64` values (`values[i]` for `vars[i]`). On the CPU each
/// is written on its own; off the CPU all values go over in one transfer
/// ([`set_vars_gathered`]).
pub fn set_vars(vars: &[&Var], values: &[Vec<f64>]) -> Result<()> {
    if vars.len() != values.len() {
        return Err(NasError::Other(format!(
            "{} value buffers for {} variables",
            values.len(),
            vars.len()
        )));
    }
    if vars.iter().all(|v| v.device().is_cpu()) {
        vars.iter()
            .zip(values)
            .try_for_each(|(v, vals)| set_var(v, vals.clone()))
    } else {
        set_vars_gathered(vars, values)
    }
}

/// [`set_vars`]' one-transfer path (any device): the values concatenated on the host, copied
/// once, and written into the variables there ([`nas_ops::assign_f64`]: one launch on a GPU).
pub(crate) fn set_vars_gathered(vars: &[&Var], values: &[Vec<f64>]) -> Result<()> {
    let Some(first) = vars.first() else {
        return Ok(());
    };
    for (i, (v, vals)) in vars.iter().zip(values).enumerate() {
        if v.elem_count() != vals.len() {
            return Err(NasError::Other(format!(
                "variable {i} has {} values, {} given",
                v.elem_count(),
                vals.len()
            )));
        }
    }
    let total: usize = values.iter().map(Vec::len).sum();
    let all: Vec<f64> = values.iter().flatten().copied().collect();
    let all = Tensor::from_vec(all, total, first.device()).map_err(terr)?;
    nas_ops::assign_f64(&all, vars).map_err(terr)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Tensors of two dtypes, one not contiguous, one empty, one scalar.
    fn mixed_tensors() -> Vec<Tensor> {
        let d = Device::Cpu;
        vec![
            Tensor::new(&[[1.5f32, -2.0, 3.25], [0.5, 7.0, -1.0]], &d).unwrap(),
            Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0], [5.0, 6.0]], &d)
                .unwrap()
                .t()
                .unwrap(),
            Tensor::zeros(0, DType::F32, &d).unwrap(),
            Tensor::new(-0.125f64, &d).unwrap(),
        ]
    }

    /// The one-transfer read gives what reading each tensor alone gives, in order (the
    /// transposed one in its logical order), for mixed and for single dtypes.
    #[test]
    fn the_gathered_read_matches_reading_each_tensor() {
        let ts = mixed_tensors();
        let refs: Vec<&Tensor> = ts.iter().collect();
        let each: Vec<Vec<f64>> = refs.iter().map(|t| to_f64(t).unwrap()).collect();
        assert_eq!(each[1], vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        assert_eq!(to_f64_gathered(&refs).unwrap(), each);
        let f32s = [&ts[0], &ts[2]];
        assert_eq!(
            to_f64_gathered(&f32s).unwrap(),
            vec![vec![1.5, -2.0, 3.25, 0.5, 7.0, -1.0], vec![]]
        );
        assert!(to_f64_gathered(&[]).unwrap().is_empty());
    }

    /// The one-transfer write sets every variable to its own values in its own dtype and
    /// shape, and refuses a buffer of the wrong length without a partial write.
    #[test]
    fn the_gathered_write_sets_each_variable() {
        let vars: Vec<Var> = mixed_tensors()
            .iter()
            .map(|t| Var::from_tensor(&t.contiguous().unwrap()).unwrap())
            .collect();
        let refs: Vec<&Var> = vars.iter().collect();
        let values: Vec<Vec<f64>> = vars
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (0..v.elem_count())
                    .map(|j| (10 * i + j) as f64 + 0.5)
                    .collect()
            })
            .collect();
        set_vars_gathered(&refs, &values).unwrap();
        for (v, want) in vars.iter().zip(&values) {
            assert_eq!(&to_f64(v.as_tensor()).unwrap(), want);
        }
        assert_eq!(vars[1].dims(), &[2, 3]);
        assert_eq!(vars[0].dtype(), DType::F32);
        let mut short = values.clone();
        short[3].clear();
        short[0] = vec![9.0; 6];
        assert!(set_vars_gathered(&refs, &short).is_err());
        assert_eq!(to_f64(vars[0].as_tensor()).unwrap(), values[0]);
        assert!(set_vars(&refs, &values[..2]).is_err());
    }
}
