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

    /// [`Handoff::take`], or `None` when nothing was left.
    pub(crate) fn take_if_left(&self, on: &Tensor) -> Result<Option<Tensor>> {
        let left = self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        match left {
            true => self.take(on).map(Some),
            false => Ok(None),
        }
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

/// What a device backward computes from the output gradient: `dL/dx` and, when the weights
/// get gradients, their flat gradient; `None` when the kernels do not take the shapes.
pub(crate) type DeviceGrads = Option<(CudaStorage, Option<CudaStorage>)>;

/// A fused op's backward on a GPU as one custom op over the output gradient, which runs `run`
/// on it: the input's gradient is the op's output, the weights' flat gradient (when `run`
/// makes one) is left in a [`Handoff`] and becomes a tensor of its own.
struct DeviceBackward<'a, F> {
    name: &'static str,
    run: F,
    x_shape: &'a Shape,
    weights_len: usize,
    weights: Handoff,
}

/// Runs the device backward `run` of op `name` on the output gradient `g` (contiguous, on
/// the GPU): `dL/dx` of shape `x_shape` and, when `run` gave one, the weights' flat gradient
/// of `weights_len` values.
pub(crate) fn device_backward<F>(
    name: &'static str,
    g: &Tensor,
    x_shape: &Shape,
    weights_len: usize,
    run: F,
) -> Result<(Tensor, Option<Tensor>)>
where
    F: Fn(&CudaStorage, &Layout) -> Result<DeviceGrads>,
{
    let op = DeviceBackward {
        name,
        run,
        x_shape,
        weights_len,
        weights: Handoff::default(),
    };
    let gx = g.apply_op1_no_bwd(&op)?;
    Ok((gx, op.weights.take_if_left(g)?))
}

impl<F> CustomOp1 for DeviceBackward<'_, F>
where
    F: Fn(&CudaStorage, &Layout) -> Result<DeviceGrads>,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!(
            "{}: the forward ran on a GPU, the gradient is on the CPU",
            self.name
        )
    }

    fn cuda_fwd(&self, sg: &CudaStorage, lg: &Layout) -> Result<(CudaStorage, Shape)> {
        let _profile = crate::profile::scope(self.name);
        let Some((gx, weights)) = (self.run)(sg, lg)? else {
            bail!(
                "{} on CUDA: shapes that do not match its forward's",
                self.name
            );
        };
        if let Some(w) = weights {
            self.weights.put(w, Shape::from(self.weights_len));
        }
        Ok((gx, self.x_shape.clone()))
    }
}
