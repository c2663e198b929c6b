//! Many tensors as one flat `f64` tensor and back: how an optimizer step off the CPU brings
//! every weight (or gradient) of a network to the host in one copy, and the weights back.
use candle_core::{bail, DType, Result, Tensor, Var};
#[cfg(feature = "cuda")]
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

/// The values of `ts` (any shapes, `f32` or `f64`, all on one device) flattened, concatenated
/// in order and converted to `f64`: one `[total]` tensor on their device. On a CUDA device
/// that is one launch of nas-kernels' gather when they share a dtype (docs/gpu.md); elsewhere,
/// candle's concatenation (a copy per tensor there) and conversion.
pub fn concat_f64(ts: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = ts.first() else {
        bail!("concat_f64: no tensors");
    };
    for (i, t) in ts.iter().enumerate() {
        if !t.device().same_device(first.device()) {
            bail!("concat_f64: tensor {i} is on another device than tensor 0");
        }
    }
    let flat: Vec<Tensor> = ts.iter().map(|t| t.flatten_all()).collect::<Result<_>>()?;
    #[cfg(feature = "cuda")]
    if let Some(t) = gathered_on_device(&flat)? {
        return Ok(t);
    }
    let one_dtype = flat.windows(2).all(|w| w[0].dtype() == w[1].dtype());
    if one_dtype {
        Tensor::cat(&flat, 0)?.to_dtype(DType::F64)
    } else {
        let wide: Vec<Tensor> = flat
            .iter()
            .map(|t| t.to_dtype(DType::F64))
            .collect::<Result<_>>()?;
        Tensor::cat(&wide, 0)
    }
}

/// Writes `flat` (`[total]` `f64`, on the variables' device, `total` their element count) into
/// `vars` in order, each slice reshaped and converted to its variable's dtype: the reverse of
/// [`concat_f64`]. On a CUDA device one launch of nas-kernels' scatter when the variables share
/// a dtype; elsewhere a narrow, a conversion and [`Var::set`] per variable.
pub fn assign_f64(flat: &Tensor, vars: &[&Var]) -> Result<()> {
    let total: usize = vars.iter().map(|v| v.elem_count()).sum();
    if flat.dtype() != DType::F64 || flat.dims() != [total] {
        bail!(
            "assign_f64: expected [{total}] f64 values, got {:?} {:?}",
            flat.dims(),
            flat.dtype()
        );
    }
    #[cfg(feature = "cuda")]
    if flat.device().is_cuda() && crate::device::scatter_f64(flat, vars)? {
        return Ok(());
    }
    let mut start = 0;
    for v in vars {
        let n = v.elem_count();
        let t = flat
            .narrow(0, start, n)?
            .reshape(v.dims())?
            .to_dtype(v.dtype())?;
        v.set(&t)?;
        start += n;
    }
    Ok(())
}

/// [`concat_f64`] by the gather kernel, when the tensors are on a CUDA device and it serves
/// them (`None` otherwise).
#[cfg(feature = "cuda")]
fn gathered_on_device(flat: &[Tensor]) -> Result<Option<Tensor>> {
    let first = &flat[0];
    let candle_core::Device::Cuda(_) = first.device() else {
        return Ok(None);
    };
    if flat.len() > 65_535 || flat.iter().any(|t| t.dtype() != first.dtype()) {
        return Ok(None);
    }
    if !matches!(first.dtype(), DType::F32 | DType::F64) || flat.iter().all(|t| t.elem_count() == 0)
    {
        return Ok(None);
    }
    let ts: Vec<Tensor> = flat.iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
    let total = ts.iter().map(|t| t.elem_count()).sum();
    let op = Gather {
        rest: ts[1..].to_vec(),
        total,
    };
    ts[0].apply_op1_no_bwd(&op).map(Some)
}

/// The gather as a custom op on the first tensor, which candle hands it (its storage is not
/// locked a second time), followed by the others it holds.
#[cfg(feature = "cuda")]
struct Gather {
    rest: Vec<Tensor>,
    total: usize,
}

#[cfg(feature = "cuda")]
impl CustomOp1 for Gather {
    fn name(&self) -> &'static str {
        "nas-gather-f64"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("nas-gather-f64: the device gather was asked for CPU tensors")
    }

    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        match crate::device::gather_f64((s, l), &self.rest)? {
            Some(out) => Ok((out, Shape::from(self.total))),
            None => bail!("nas-gather-f64: tensors the device gather does not take"),
        }
    }
}
