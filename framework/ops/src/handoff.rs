//! A device buffer made inside one custom op, handed out as a tensor of its own.
//!
//! A candle custom op gives back one buffer. A backward that makes several (an input's
//! gradient and its weights' gradients) used to return them as one flat buffer that the caller
//! cut into views; but a view keeps its whole buffer alive, and the weights' gradients are held
//! until the end of the backward: each op's input gradient, an activation-sized buffer, was
//! held with them. Instead the op [`Handoff::put`]s each extra buffer here and the caller turns
//! it into a tensor of its own ([`Handoff::take`]: a custom op of no launch and no copy).
use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// One device buffer on its way from the op that made it to a tensor.
#[derive(Default)]
pub(crate) struct Handoff(Mutex<Option<(CudaStorage, Shape)>>);

impl Handoff {
    /// Leaves `storage` (of `shape`) for [`Handoff::take`].
    pub(crate) fn put(&self, storage: CudaStorage, shape: Shape) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((storage, shape));
    }

    /// The buffer left here, as a tensor without a gradient (`on`: any tensor on its device).
    /// An error when nothing was left or it was taken already.
    pub(crate) fn take(&self, on: &Tensor) -> Result<Tensor> {
        on.apply_op1_no_bwd(self)
    }
}

impl CustomOp1 for Handoff {
    fn name(&self) -> &'static str {
        "nas-handoff"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("nas-handoff: a device buffer handed out on the CPU")
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(out) => Ok(out),
            None => bail!("nas-handoff: no buffer was left to take"),
        }
    }
}
