//! Batch normalisation over NCHW with PyTorch `BatchNorm2d` semantics (Ioffe & Szegedy 2015;
//! PyTorch `torch.nn.BatchNorm2d`): in training mode it normalises with the batch mean and the
//! *biased* batch variance over (N, H, W) and updates the running statistics with the
//! *unbiased* variance; in evaluation mode it normalises with the running statistics.
//! `momentum = None` gives PyTorch's cumulative moving average (`1 / num_batches_tracked`), which
//! is what batch-norm recalibration of a sampled sub-network uses.
use crate::cpu::{dispatch_float, slice, sum, Float};
use crate::fresh::{par_chunks_zeroed, Split};
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, Var,
};
use rayon::prelude::*;
use std::sync::{Arc, Mutex, MutexGuard};

/// Batch norm over the channels of NCHW tensors, holding its running statistics behind a
/// mutex so that [`BatchNorm2d::forward`] (`&self`) can update them in training mode.
pub struct BatchNorm2d {
    channels: usize,
    eps: f64,
    weight: Option<Var>,
    bias: Option<Var>,
    state: Mutex<Running>,
}

/// A batch norm's running state held locked from a GPU training forward's fold target until
/// its count advances ([`BatchNorm2d::begin_fold`], [`BatchNorm2d::finish_running`]).
#[cfg(feature = "cuda")]
pub(crate) struct RunningHold<'a>(MutexGuard<'a, Running>);

struct Running {
    mean: Vec<f64>,
    var: Vec<f64>,
    count: u64,
    momentum: Option<f64>,
    /// While training on a GPU: the running statistics on that device, which then hold the
    /// current values (`mean` and `var` above are stale until [`Running::pull`]).
    #[cfg(feature = "cuda")]
    device: Option<Box<crate::device::DeviceRunning>>,
}

impl Running {
    /// Counts one more training batch and gives its running-average factor: the momentum, or
    /// `1 / count` for a cumulative average.
    fn advance(&mut self) -> f64 {
        let f = self.next_factor();
        self.count += 1;
        f
    }

    /// The running-average factor the next training batch will fold with ([`Self::advance`]
    /// counts it).
    fn next_factor(&self) -> f64 {
        match self.momentum {
            Some(mo) => mo,
            None => 1.0 / (self.count + 1) as f64,
        }
    }

    /// Where a training forward on `device` folds its batch statistics in its own launch: the
    /// running statistics moved to that device first if they are elsewhere (the host, or
    /// another GPU). The count advances after the forward, in the same critical section
    /// ([`BatchNorm2d::forward`] holds the state locked until then), as on the CPU.
    #[cfg(feature = "cuda")]
    fn fold_target(
        &mut self,
        device: &candle_core::CudaDevice,
    ) -> Result<crate::device::RunningFold> {
        let factor = self.next_factor();
        match &mut self.device {
            Some(d) if d.is_on(device) => Ok(d.fold_target(factor)),
            _ => {
                self.pull()?;
                let mut d = crate::device::DeviceRunning::upload(device, &self.mean, &self.var)?;
                let target = d.fold_target(factor);
                self.device = Some(Box::new(d));
                Ok(target)
            }
        }
    }

    /// Makes the host copy current: copies the running statistics back from the device where
    /// training last updated them (a synchronisation; only when something reads them).
    #[cfg(feature = "cuda")]
    fn pull(&mut self) -> Result<()> {
        if let Some(d) = &self.device {
            let (mean, var) = d.download()?;
            self.mean = mean;
            self.var = var;
            self.device = None;
        }
        Ok(())
    }

    #[cfg(not(feature = "cuda"))]
    fn pull(&mut self) -> Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for BatchNorm2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchNorm2d")
            .field("channels", &self.channels)
            .field("eps", &self.eps)
            .field("affine", &self.weight.is_some())
            .field("momentum", &self.lock().momentum)
            .finish()
    }
}

impl BatchNorm2d {
    /// A batch norm over `channels` channels. `affine` is `(weight, bias)`, each of shape `[C]`
    /// (PyTorch initialises them to ones and zeros); `eps` is added to the variance (PyTorch:
    /// 1e-5); `momentum` is the running-average factor (PyTorch: 0.1), `None` for a cumulative
    /// average. Running statistics start at mean 0, variance 1.
    pub fn new(
        channels: usize,
        affine: Option<(Var, Var)>,
        eps: f64,
        momentum: Option<f64>,
    ) -> Self {
        let (weight, bias) = match affine {
            Some((w, b)) => (Some(w), Some(b)),
            None => (None, None),
        };
        Self {
            channels,
            eps,
            weight,
            bias,
            state: Mutex::new(Running {
                mean: vec![0.0; channels],
                var: vec![1.0; channels],
                count: 0,
                momentum,
                #[cfg(feature = "cuda")]
                device: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Running> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state with its host copy of the running statistics current.
    fn host(&self) -> Result<MutexGuard<'_, Running>> {
        let mut st = self.lock();
        st.pull()?;
        Ok(st)
    }

    /// [`Self::host`] for the infallible accessors: when the device copy cannot be read back
    /// (a failed GPU), the last host values, with a warning.
    fn host_or_last(&self) -> MutexGuard<'_, Running> {
        #[allow(unused_mut)]
        let mut st = self.lock();
        #[cfg(feature = "cuda")]
        if let Err(e) = st.pull() {
            tracing::warn!(
                "BatchNorm2d: running statistics could not be read from the GPU ({e}); using the last host copy"
            );
            st.device = None;
        }
        st
    }

    /// Normalises `x` `[N, C, H, W]`: with the batch statistics (and an update of the running
    /// ones) when `train`, else with the running statistics. Differentiable with respect to `x`
    /// and, when affine, the weight and bias.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if c != self.channels {
            bail!(
                "BatchNorm2d: expected {} channels, got input {:?}",
                self.channels,
                x.dims()
            );
        }
        crate::cpu::check_float("BatchNorm2d", x.dtype())?;
        let m = n * h * w;
        let mode = self.mode(train, m, x.dims())?;
        if let (Mode::Eval { mean, invstd }, false) = (&mode, x.device().is_cpu()) {
            return self.eval_by_tensor_ops(x, mean, invstd);
        }
        // On a GPU the forward folds its batch statistics into the running ones itself; the
        // state stays locked (the running buffers alive) until it is launched.
        #[cfg(feature = "cuda")]
        let (held, fold) = self.begin_fold(x, &mode)?;
        let op = BnOp {
            n,
            c,
            hw: h * w,
            eps: self.eps,
            mode: mode.clone(),
            #[cfg(feature = "cuda")]
            fold,
        };
        let x = x.contiguous()?;
        let y = match (&self.weight, &self.bias) {
            (Some(wt), Some(b)) => {
                for p in [wt.as_tensor(), b.as_tensor()] {
                    if p.dims() != [c] || p.dtype() != x.dtype() {
                        bail!(
                            "BatchNorm2d: affine parameters must be [{c}] of {:?}, got {:?} {:?}",
                            x.dtype(),
                            p.dims(),
                            p.dtype()
                        );
                    }
                }
                x.apply_op3(
                    &wt.as_tensor().contiguous()?,
                    &b.as_tensor().contiguous()?,
                    op,
                )?
            }
            _ => x.apply_op1(op)?,
        };
        #[cfg(feature = "cuda")]
        self.finish_running(held, &mode, m)?;
        #[cfg(not(feature = "cuda"))]
        self.update_running(&mode, m)?;
        Ok(y)
    }

    /// Evaluation-mode normalisation with candle's element-wise ops (used off the CPU, where
    /// they run on the device): `(x - mean) * invstd * gamma + beta` per channel, gradients
    /// through candle's autograd.
    fn eval_by_tensor_ops(&self, x: &Tensor, mean: &[f64], invstd: &[f64]) -> Result<Tensor> {
        let c = self.channels;
        let per_channel = |v: &[f64]| -> Result<Tensor> {
            Tensor::from_slice(v, (1, c, 1, 1), &candle_core::Device::Cpu)?
                .to_dtype(x.dtype())?
                .to_device(x.device())
        };
        let mut y = x
            .broadcast_sub(&per_channel(mean)?)?
            .broadcast_mul(&per_channel(invstd)?)?;
        if let (Some(wt), Some(b)) = (&self.weight, &self.bias) {
            y = y
                .broadcast_mul(&wt.as_tensor().reshape((1, c, 1, 1))?)?
                .broadcast_add(&b.as_tensor().reshape((1, c, 1, 1))?)?;
        }
        Ok(y)
    }

    /// Whether the batch norm has affine parameters (weight and bias).
    pub fn is_affine(&self) -> bool {
        self.weight.is_some()
    }

    /// The affine parameters `(weight, bias)`, when there are both.
    pub(crate) fn affine_params(&self) -> Option<(&Var, &Var)> {
        self.weight.as_ref().zip(self.bias.as_ref())
    }

    /// The statistics a forward over `m` values per channel uses: batch statistics (recorded
    /// by the forward) when `train`, else the running ones.
    pub(crate) fn mode(&self, train: bool, m: usize, dims: &[usize]) -> Result<Mode> {
        Ok(if train {
            if m < 2 {
                bail!("BatchNorm2d: expected more than 1 value per channel when training, got input {dims:?}");
            }
            Mode::Train(Arc::new(Mutex::new(None)))
        } else {
            let st = self.host()?;
            let invstd = st.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
            Mode::Eval {
                mean: st.mean.clone(),
                invstd,
            }
        })
    }

    /// The epsilon added to the variance.
    pub(crate) fn eps(&self) -> f64 {
        self.eps
    }

    /// After a training forward under `mode` over `m` values per channel: folds its batch
    /// statistics into the running ones (nothing in evaluation mode).
    ///
    /// A GPU forward has folded its statistics on that GPU already, in its own launch
    /// ([`crate::device::RunningFold`]), where the running values then stay until something
    /// reads them; here it is only counted.
    pub(crate) fn update_running(&self, mode: &Mode, m: usize) -> Result<()> {
        if !matches!(mode, Mode::Train(_)) {
            return Ok(());
        }
        self.update_running_in(&mut self.lock(), mode, m)
    }

    /// For a training forward under `mode` on a GPU: the state, locked until the forward is
    /// launched and counted ([`Self::finish_running`]), and where the forward folds its batch
    /// statistics in its own launch; `(None, None)` on the CPU and in evaluation mode.
    #[cfg(feature = "cuda")]
    pub(crate) fn begin_fold(
        &self,
        x: &Tensor,
        mode: &Mode,
    ) -> Result<(Option<RunningHold<'_>>, Option<crate::device::RunningFold>)> {
        match (mode, x.device()) {
            (Mode::Train(_), candle_core::Device::Cuda(dev)) => {
                let mut st = self.lock();
                let target = st.fold_target(dev)?;
                Ok((Some(RunningHold(st)), Some(target)))
            }
            _ => Ok((None, None)),
        }
    }

    /// After a training forward: [`Self::update_running`], in the critical section that
    /// [`Self::begin_fold`] opened when there is one (the fold's factor and its count in one).
    #[cfg(feature = "cuda")]
    pub(crate) fn finish_running(
        &self,
        held: Option<RunningHold<'_>>,
        mode: &Mode,
        m: usize,
    ) -> Result<()> {
        match held {
            Some(mut h) => self.update_running_in(&mut h.0, mode, m),
            None => self.update_running(mode, m),
        }
    }

    /// [`Self::update_running`] on the state `st`, locked by the caller.
    fn update_running_in(&self, st: &mut Running, mode: &Mode, m: usize) -> Result<()> {
        let c = self.channels;
        let Mode::Train(saved) = mode else {
            return Ok(());
        };
        let stats = saved.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match stats {
            None => bail!("BatchNorm2d: batch statistics were not recorded"),
            Some(BatchStats::Host { mean, var }) => {
                st.pull()?;
                let f = st.advance();
                let unbias = m as f64 / (m - 1) as f64;
                for ch in 0..c {
                    st.mean[ch] = (1.0 - f) * st.mean[ch] + f * mean[ch];
                    st.var[ch] = (1.0 - f) * st.var[ch] + f * var[ch] * unbias;
                }
            }
            #[cfg(feature = "cuda")]
            Some(BatchStats::Device(stats)) => {
                if !stats.folded() {
                    bail!("BatchNorm2d: a GPU forward did not fold its batch statistics");
                }
                // Folded on the device by the forward itself ([`Running::fold_target`]).
                st.advance();
            }
        }
        Ok(())
    }

    /// The running statistics `(mean, var)` (the variance is the unbiased running estimate).
    pub fn running_stats(&self) -> (Vec<f64>, Vec<f64>) {
        let st = self.host_or_last();
        (st.mean.clone(), st.var.clone())
    }

    /// Replaces the running statistics (e.g. from a checkpoint). Both slices should have one
    /// value per channel; values beyond the channel count are ignored and missing ones leave the
    /// current value. [`BatchNorm2d::try_set_running_stats`] reports a length mismatch instead.
    pub fn set_running_stats(&self, mean: &[f64], var: &[f64]) {
        let mut st = self.host_or_last();
        for (d, s) in st.mean.iter_mut().zip(mean) {
            *d = *s;
        }
        for (d, s) in st.var.iter_mut().zip(var) {
            *d = *s;
        }
    }

    /// Like [`BatchNorm2d::set_running_stats`], but fails (changing nothing) unless both slices
    /// have exactly one value per channel.
    pub fn try_set_running_stats(&self, mean: &[f64], var: &[f64]) -> Result<()> {
        if mean.len() != self.channels || var.len() != self.channels {
            bail!(
                "BatchNorm2d: running stats need {} values, got mean {} and var {}",
                self.channels,
                mean.len(),
                var.len()
            );
        }
        self.set_running_stats(mean, var);
        Ok(())
    }

    /// Resets the running statistics to mean 0, variance 1 and the batch count to 0.
    pub fn reset_running_stats(&self) {
        let mut st = self.lock();
        #[cfg(feature = "cuda")]
        {
            st.device = None;
        }
        st.mean.iter_mut().for_each(|v| *v = 0.0);
        st.var.iter_mut().for_each(|v| *v = 1.0);
        st.count = 0;
    }

    /// Sets the running-average factor (`None`: cumulative average over the batches since the
    /// last reset, as PyTorch's `momentum=None`).
    pub fn set_momentum(&self, momentum: Option<f64>) {
        self.lock().momentum = momentum;
    }

    /// Number of training-mode forwards since creation or the last reset.
    pub fn num_batches_tracked(&self) -> u64 {
        self.lock().count
    }

    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The learnable parameters: `[weight, bias]` when affine, else empty.
    pub fn params(&self) -> Vec<Var> {
        self.weight
            .iter()
            .chain(self.bias.iter())
            .cloned()
            .collect()
    }
}

/// Batch statistics of one training forward.
#[derive(Clone)]
pub(crate) enum BatchStats {
    /// On the host: mean and biased variance per channel.
    Host { mean: Vec<f64>, var: Vec<f64> },
    /// On the GPU the forward ran on (never copied to the host).
    #[cfg(feature = "cuda")]
    Device(Arc<crate::device::DeviceBatchStats>),
}

#[derive(Clone)]
pub(crate) enum Mode {
    /// Batch statistics, recorded here by the forward for the backward and the running update.
    Train(Arc<Mutex<Option<BatchStats>>>),
    /// Fixed statistics (the running ones).
    Eval { mean: Vec<f64>, invstd: Vec<f64> },
}

pub(crate) struct BnOp {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub eps: f64,
    pub mode: Mode,
    /// On a GPU in training mode: where the forward folds the batch statistics into the
    /// running ones (in the same launch).
    #[cfg(feature = "cuda")]
    pub fold: Option<crate::device::RunningFold>,
}

impl BnOp {
    pub(crate) fn run<T: Float>(&self, x: &[T], gamma: Option<&[T]>, beta: Option<&[T]>) -> Vec<T> {
        self.run_with_moments(x, gamma, beta, None)
    }

    /// [`Self::run`] given the [`plane_moments`] of every plane of `x` (NCHW order) when the
    /// caller took them while `x` was in its cache (the fused unit); otherwise, in training
    /// mode, they are taken here. Either way the statistics are the same, bit for bit.
    pub(crate) fn run_with_moments<T: Float>(
        &self,
        x: &[T],
        gamma: Option<&[T]>,
        beta: Option<&[T]>,
        moments: Option<&[[f64; 2]]>,
    ) -> Vec<T> {
        let (mean, invstd) = match &self.mode {
            Mode::Train(saved) => {
                let (mean, var) = match moments {
                    Some(m) => stats_from_moments::<T>(m, self.n, self.c, self.hw),
                    None => batch_stats(x, self.n, self.c, self.hw),
                };
                let invstd = var
                    .iter()
                    .map(|v| 1.0 / (v + self.eps).sqrt())
                    .collect::<Vec<_>>();
                *saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(BatchStats::Host {
                    mean: mean.clone(),
                    var,
                });
                (mean, invstd)
            }
            Mode::Eval { mean, invstd } => (mean.clone(), invstd.clone()),
        };
        let c = self.c;
        let scale: Vec<T> = (0..c)
            .map(|ch| T::from_f64(invstd[ch] * gamma.map_or(1.0, |g| g[ch].to_f64())))
            .collect();
        let shift: Vec<T> = (0..c).map(|ch| beta.map_or(T::ZERO, |b| b[ch])).collect();
        let mean: Vec<T> = mean.iter().map(|&m| T::from_f64(m)).collect();
        let hw = self.hw;
        par_chunks_zeroed(
            Split::planes(x.len(), hw),
            || (),
            |_, p, yp| {
                let ch = p % c;
                let (m, a, b) = (mean[ch], scale[ch], shift[ch]);
                for (yv, &xv) in yp.iter_mut().zip(&x[p * hw..(p + 1) * hw]) {
                    *yv = (xv - m) * a + b;
                }
            },
        )
    }

    /// The training-mode forward on a CUDA device ([`crate::device::batch_norm_train`]),
    /// recording the batch statistics as the CPU forward does; `None` (the host path) in
    /// evaluation mode.
    #[cfg(feature = "cuda")]
    fn device_train(
        &self,
        x: (&candle_core::CudaStorage, &Layout),
        affine: Option<[(&candle_core::CudaStorage, &Layout); 2]>,
    ) -> Result<crate::device::Launched> {
        let Mode::Train(saved) = &self.mode else {
            return Ok(None);
        };
        let dims = (self.n, self.c, self.hw);
        let Some((y, shape, stats)) =
            crate::device::batch_norm_train(x, affine, dims, self.eps, self.fold)?
        else {
            return Ok(None);
        };
        *saved.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(BatchStats::Device(Arc::new(stats)));
        Ok(Some((y, shape)))
    }

    /// Records the batch statistics a GPU forward of `op` (a fused op's name) left on the
    /// device, for its backward and the running update; an error outside training mode.
    #[cfg(feature = "cuda")]
    pub(crate) fn record_device_stats(
        &self,
        op: &str,
        stats: Arc<crate::device::DeviceBatchStats>,
    ) -> Result<()> {
        let Mode::Train(recorded) = &self.mode else {
            bail!("{op} on CUDA: the fused op runs in training mode only");
        };
        *recorded.lock().unwrap_or_else(|e| e.into_inner()) = Some(BatchStats::Device(stats));
        Ok(())
    }

    /// The batch statistics a GPU forward left on its device, if that is where they are.
    #[cfg(feature = "cuda")]
    fn device_stats(&self) -> Option<Arc<crate::device::DeviceBatchStats>> {
        match &self.mode {
            Mode::Train(saved) => match &*saved.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(BatchStats::Device(s)) => Some(s.clone()),
                _ => None,
            },
            Mode::Eval { .. } => None,
        }
    }

    fn stats_for_bwd(&self) -> Result<(Vec<f64>, Vec<f64>, bool)> {
        match &self.mode {
            Mode::Train(saved) => {
                let st = saved.lock().unwrap_or_else(|e| e.into_inner()).clone();
                match st {
                    None => bail!("BatchNorm2d backward: batch statistics were not recorded"),
                    Some(BatchStats::Host { mean, var }) => {
                        let invstd = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
                        Ok((mean, invstd, true))
                    }
                    #[cfg(feature = "cuda")]
                    Some(BatchStats::Device(_)) => {
                        bail!("BatchNorm2d backward: the batch statistics are on a GPU, the tensors are not")
                    }
                }
            }
            Mode::Eval { mean, invstd } => Ok((mean.clone(), invstd.clone(), false)),
        }
    }

    /// The backward kernel of this forward (`gamma` none: affine-free).
    pub(crate) fn backward_op(&self, gamma: Option<Vec<f64>>) -> Result<BnBwd> {
        let (mean, invstd, batch) = self.stats_for_bwd()?;
        Ok(BnBwd {
            n: self.n,
            c: self.c,
            hw: self.hw,
            mean,
            invstd,
            gamma: gamma.unwrap_or_else(|| vec![1.0; self.c]),
            batch,
        })
    }

    /// dL/dx, dL/dgamma, dL/dbeta for the upstream gradient `g`.
    fn backward(
        &self,
        x: &Tensor,
        gamma: Option<&Tensor>,
        g: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        #[cfg(feature = "cuda")]
        if let Some(stats) = self.device_stats() {
            let op = DeviceBnBwd {
                dims: (self.n, self.c, self.hw),
                stats,
            };
            let g = g.contiguous()?;
            let all = match gamma {
                Some(gm) => x.apply_op3_no_bwd(&g, &gm.contiguous()?, &op)?,
                None => x.apply_op2_no_bwd(&g, &op)?,
            };
            return self.split_backward(x, &all);
        }
        let gamma = match gamma {
            Some(t) => Some(t.to_dtype(DType::F64)?.to_vec1::<f64>()?),
            None => None,
        };
        let op = self.backward_op(gamma)?;
        let all = x.apply_op2_no_bwd(&g.contiguous()?, &op)?;
        self.split_backward(x, &all)
    }

    /// `(dL/dx, dL/dgamma, dL/dbeta)` from the flat output of a backward op.
    fn split_backward(&self, x: &Tensor, all: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let nx = x.elem_count();
        let gx = all.narrow(0, 0, nx)?.reshape(x.shape())?;
        let gg = all.narrow(0, nx, self.c)?;
        let gb = all.narrow(0, nx + self.c, self.c)?;
        Ok((gx, gg, gb))
    }
}

/// Per-channel mean and biased variance of `x` `[n, c, hw]`: the [`plane_moments`] of every
/// plane (in parallel), combined by [`stats_from_moments`].
fn batch_stats<T: Float>(x: &[T], n: usize, c: usize, hw: usize) -> (Vec<f64>, Vec<f64>) {
    let moments: Vec<[f64; 2]> = x
        .par_chunks(hw.max(1))
        .with_min_len(crate::cpu::planes_per_task(hw))
        .map(plane_moments)
        .collect();
    stats_from_moments::<T>(&moments, n, c, hw)
}

/// What the batch statistics need of one plane, taken in one visit while it is in cache: its
/// sum `s` (eight partial sums in `T`) and the sum of squared deviations from its own mean
/// rounded to `T`, `c = T(s / len)` (in `T`), both as f64.
pub(crate) fn plane_moments<T: Float>(plane: &[T]) -> [f64; 2] {
    let s = sum(plane).to_f64();
    let center = T::from_f64(s / plane.len().max(1) as f64);
    [s, sq_dev(plane, center).to_f64()]
}

/// Per-channel mean and biased variance from the [`plane_moments`] of the `n * c` planes of
/// `hw` elements (NCHW order), in f64: the mean is `sum_i s_i / m` (`m = n * hw`) and the
/// variance combines the planes' own deviations with the spread of their means (Chan, Golub
/// & LeVeque 1979): `m var = sum_i [q_i - hw (mu_i - c_i)^2 + hw (mu_i - mean)^2]`, `mu_i =
/// s_i / hw`, where `q_i` was taken around `c_i` instead of `mu_i`. One pass over the data
/// instead of the textbook two (mean, then squared deviations from it), with no cancellation:
/// every term is a squared deviation.
pub(crate) fn stats_from_moments<T: Float>(
    moments: &[[f64; 2]],
    n: usize,
    c: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>) {
    let m = (n * hw) as f64;
    let hwf = hw as f64;
    let at = |i: usize, ch: usize| moments.get(i * c + ch).copied().unwrap_or([0.0; 2]);
    (0..c)
        .map(|ch| {
            let mean = (0..n).fold(0f64, |acc, i| acc + at(i, ch)[0]) / m;
            let spread = (0..n).fold(0f64, |acc, i| {
                let [s, q] = at(i, ch);
                let mu = s / hwf.max(1.0);
                let center = T::from_f64(mu).to_f64();
                acc + q - hwf * (mu - center) * (mu - center) + hwf * (mu - mean) * (mu - mean)
            });
            // Rounding can leave a constant channel a hair below zero; NaN passes through.
            let var = spread / m;
            (mean, if var < 0.0 { 0.0 } else { var })
        })
        .unzip()
}

/// `sum_i (a[i] - m)^2` with eight partial sums.
fn sq_dev<T: Float>(a: &[T], m: T) -> T {
    let mut acc = [T::ZERO; 8];
    let mut ca = a.chunks_exact(8);
    for xa in &mut ca {
        for l in 0..8 {
            let d = xa[l] - m;
            acc[l] += d * d;
        }
    }
    let mut t = T::ZERO;
    for &v in ca.remainder() {
        t += (v - m) * (v - m);
    }
    acc.iter().fold(t, |s, &v| s + v)
}

/// `sum_i g[i] * (x[i] - m)` with eight partial sums.
fn dot_dev<T: Float>(g: &[T], x: &[T], m: T) -> T {
    let mut acc = [T::ZERO; 8];
    let mut cg = g.chunks_exact(8);
    let mut cx = x.chunks_exact(8);
    for (ga, xa) in (&mut cg).zip(&mut cx) {
        for l in 0..8 {
            acc[l] += ga[l] * (xa[l] - m);
        }
    }
    let mut t = T::ZERO;
    for (&gv, &xv) in cg.remainder().iter().zip(cx.remainder()) {
        t += gv * (xv - m);
    }
    acc.iter().fold(t, |s, &v| s + v)
}

impl CustomOp1 for BnOp {
    fn name(&self) -> &'static str {
        "nas-batch-norm2d"
    }

    crate::host_fallback::cuda_via_device!(|op, s, l| op.device_train((s, l), None));

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(CustomOp1::name(self));
        dispatch_float!("batch_norm2d", s, |T| {
            let y = self.run::<T>(slice(s, l)?, None, None);
            Ok((T::to_cpu_storage_owned(y), l.shape().clone()))
        })
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(x, None, g)?.0))
    }
}

impl CustomOp3 for BnOp {
    fn name(&self) -> &'static str {
        "nas-batch-norm2d-affine"
    }

    crate::host_fallback::cuda_via_device!(
        |op, s1, l1, s2, l2, s3, l3| op.device_train((s1, l1), Some([(s2, l2), (s3, l3)]))
    );

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(CustomOp3::name(self));
        dispatch_float!("batch_norm2d", s1, |T| {
            let y = self.run::<T>(slice(s1, l1)?, Some(slice(s2, l2)?), Some(slice(s3, l3)?));
            Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw, gb) = self.backward(x, Some(w), g)?;
        Ok((Some(gx), Some(gw), Some(gb)))
    }
}

/// Backward of batch norm: inputs (x, dL/dy); output the flat concatenation
/// `[dL/dx, dL/dgamma, dL/dbeta]`.
pub(crate) struct BnBwd {
    n: usize,
    c: usize,
    hw: usize,
    mean: Vec<f64>,
    invstd: Vec<f64>,
    gamma: Vec<f64>,
    /// Whether the statistics came from the batch (their gradient then flows into dL/dx).
    batch: bool,
}

impl BnBwd {
    /// `[dL/dx, dL/dgamma, dL/dbeta]` flat.
    pub(crate) fn run<T: Float>(&self, x: &[T], g: &[T]) -> Vec<T> {
        let (c, hw) = (self.c, self.hw);
        let coef = self.coefficients(x, g);
        let split = Split::planes(x.len(), hw).with_tail(2 * c);
        let mut out = par_chunks_zeroed(
            split,
            || (),
            |_, p, gxp| {
                let r = p * hw..(p + 1) * hw;
                coef.apply_plane(p, &g[r.clone()], &x[r], gxp);
            },
        );
        out[x.len()..].copy_from_slice(&self.param_grads(&coef));
        out
    }

    /// `[dL/dgamma, dL/dbeta]` (`2 * C` values) from the backward's reductions `coef`:
    /// `sum(g * xhat)` and `sum(g)` per channel.
    pub(crate) fn param_grads<T: Float>(&self, coef: &BnCoefficients<T>) -> Vec<T> {
        let gamma = (0..self.c).map(|ch| T::from_f64(self.invstd[ch] * coef.sgx[ch]));
        let beta = coef.sg.iter().map(|&v| T::from_f64(v));
        gamma.chain(beta).collect()
    }

    /// The per-channel reductions of the backward over the whole batch (`sum(g)`, `sum(g *
    /// (x - mean))`) and the coefficients of `dL/dx` they give.
    pub(crate) fn coefficients<T: Float>(&self, x: &[T], g: &[T]) -> BnCoefficients<T> {
        let (n, c, hw) = (self.n, self.c, self.hw);
        let m = (n * hw) as f64;
        // Per channel: sum(g) and sum(g * (x - mean)).
        let (sg, sgx): (Vec<f64>, Vec<f64>) = (0..c)
            .into_par_iter()
            .map(|ch| {
                let mt = T::from_f64(self.mean[ch]);
                let mut a = 0f64;
                let mut b = 0f64;
                for i in 0..n {
                    let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                    a += sum(&g[r.clone()]).to_f64();
                    b += dot_dev(&g[r.clone()], &x[r], mt).to_f64();
                }
                (a, b)
            })
            .unzip();
        // dx = a * g + b * (x - mean) + c0 per channel.
        let coef: Vec<(T, T, T, T)> = (0..c)
            .map(|ch| {
                let (is, ga) = (self.invstd[ch], self.gamma[ch]);
                let a = ga * is;
                let (b, c0) = if self.batch {
                    (-ga * is * is * is * sgx[ch] / m, -ga * is * sg[ch] / m)
                } else {
                    (0.0, 0.0)
                };
                (
                    T::from_f64(a),
                    T::from_f64(b),
                    T::from_f64(c0),
                    T::from_f64(self.mean[ch]),
                )
            })
            .collect();
        BnCoefficients { coef, sg, sgx }
    }
}

/// What the batch-norm backward needs from the whole batch ([`BnBwd::coefficients`]): per
/// channel, `dL/dx = a * g + b * (x - mean) + c0` as `(a, b, c0, mean)`, and the sums behind
/// the parameter gradients.
pub(crate) struct BnCoefficients<T> {
    coef: Vec<(T, T, T, T)>,
    sg: Vec<f64>,
    sgx: Vec<f64>,
}

impl<T: Float> BnCoefficients<T> {
    /// `dL/dx` of plane `p` (channel `p % C`) from its `g` and `x`, into `out`.
    pub(crate) fn apply_plane(&self, p: usize, g: &[T], x: &[T], out: &mut [T]) {
        let (a, b, c0, mt) = self.coef[p % self.coef.len()];
        for ((d, &gv), &xv) in out.iter_mut().zip(g).zip(x) {
            *d = a * gv + b * (xv - mt) + c0;
        }
    }
}

impl CustomOp2 for BnBwd {
    fn name(&self) -> &'static str {
        "nas-batch-norm2d-bwd"
    }

    // Statistics on the host on a GPU only when the forward went through the host path: so
    // does the backward (a GPU forward's backward is DeviceBnBwd).
    crate::host_fallback::cuda_via_host!(2);

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        dispatch_float!("batch_norm2d backward", s1, |T| {
            let out = self.run::<T>(slice(s1, l1)?, slice(s2, l2)?);
            let len = out.len();
            Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
        })
    }
}

/// Backward of a batch norm whose forward ran on a GPU, through the batch statistics it left
/// there: inputs `x`, `dL/dy` and, when affine (the [`CustomOp3`] form), `gamma`; output the
/// flat `[dL/dx, dL/dgamma, dL/dbeta]` as [`BnBwd`].
#[cfg(feature = "cuda")]
struct DeviceBnBwd {
    dims: (usize, usize, usize),
    stats: Arc<crate::device::DeviceBatchStats>,
}

#[cfg(feature = "cuda")]
impl DeviceBnBwd {
    fn on_host() -> Result<(CpuStorage, Shape)> {
        bail!("BatchNorm2d backward: the batch statistics are on a GPU, the tensors on the CPU")
    }

    fn launch(
        &self,
        x: (&candle_core::CudaStorage, &Layout),
        g: (&candle_core::CudaStorage, &Layout),
        gamma: Option<(&candle_core::CudaStorage, &Layout)>,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::device::batch_norm_train_bwd(x, g, gamma, self.dims, &self.stats)?.ok_or_else(|| {
            candle_core::Error::Msg(
                "BatchNorm2d backward on CUDA: inputs the device kernel does not take (f32/f64, contiguous)".into(),
            )
        })
    }
}

#[cfg(feature = "cuda")]
impl CustomOp2 for DeviceBnBwd {
    fn name(&self) -> &'static str {
        "nas-batch-norm2d-bwd-device"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Self::on_host()
    }

    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.launch((s1, l1), (s2, l2), None)
    }
}

#[cfg(feature = "cuda")]
impl CustomOp3 for DeviceBnBwd {
    fn name(&self) -> &'static str {
        "nas-batch-norm2d-affine-bwd-device"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Self::on_host()
    }

    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.launch((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The one-pass statistics (per-plane moments combined) against the textbook two passes in
    /// f64 on the same values: a channel far from zero with a small spread (where a plain sum
    /// of squares would cancel), one around zero, one constant; planes of 37 (not a multiple of
    /// the eight partial sums).
    #[test]
    fn one_pass_statistics_match_two_passes_in_f64() {
        let (n, c, hw) = (3, 3, 37);
        let value = |i: usize| -> f64 {
            let ch = (i / hw) % c;
            let jitter = ((i * 7919) % 101) as f64 / 100.0;
            [1.0e4 + jitter, jitter - 0.5, 2.5][ch]
        };
        let x64: Vec<f64> = (0..n * c * hw).map(value).collect();
        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        let two_pass = |x: &[f64], ch: usize| -> (f64, f64) {
            let vals: Vec<f64> = (0..n)
                .flat_map(|i| x[(i * c + ch) * hw..(i * c + ch + 1) * hw].to_vec())
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / vals.len() as f64;
            (mean, var)
        };
        let widened: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let cases = [
            (batch_stats(&x64, n, c, hw), x64.clone(), 1e-12),
            (batch_stats(&x32, n, c, hw), widened, 1e-5),
        ];
        for ((mean, var), x, tol) in cases {
            for ch in 0..c {
                let (m, v) = two_pass(&x, ch);
                assert!(
                    (mean[ch] - m).abs() <= tol * m.abs().max(1.0),
                    "mean {ch}: {} vs {m}",
                    mean[ch]
                );
                assert!(
                    (var[ch] - v).abs() <= tol * v.max(1e-3),
                    "var {ch}: {} vs {v}",
                    var[ch]
                );
            }
            assert_eq!(var[2], 0.0, "a constant channel has no variance");
        }
    }

    /// The evaluation path off the CPU (candle's ops) against the CPU kernel: output and the
    /// gradients of the input and of both affine parameters.
    #[test]
    fn the_tensor_op_eval_path_matches_the_kernel() {
        let dev = Device::Cpu;
        let (n, c, h, w) = (2, 3, 4, 5);
        let fill = |len: usize, seed: usize| -> Vec<f64> {
            (0..len)
                .map(|i| ((i * 13 + seed * 7) % 17) as f64 / 8.0 - 1.0)
                .collect()
        };
        let gamma = Var::from_vec(vec![0.5, 1.5, -2.0], c, &dev).unwrap();
        let beta = Var::from_vec(vec![0.1, -0.2, 0.3], c, &dev).unwrap();
        let bn = BatchNorm2d::new(c, Some((gamma.clone(), beta.clone())), 1e-5, Some(0.1));
        bn.set_running_stats(&[0.2, -0.1, 0.05], &[0.9, 1.7, 0.4]);
        let x = Var::from_vec(fill(n * c * h * w, 1), (n, c, h, w), &dev).unwrap();
        let r = Tensor::from_vec(fill(n * c * h * w, 2), (n, c, h, w), &dev).unwrap();
        let run = |y: Tensor| {
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let mut out = vec![y.flatten_all().unwrap().to_vec1::<f64>().unwrap()];
            for v in [&x, &gamma, &beta] {
                let g = grads.get(v.as_tensor()).unwrap();
                out.push(g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
            }
            out
        };
        let kernel = run(bn.forward(x.as_tensor(), false).unwrap());
        let Mode::Eval { mean, invstd } = bn.mode(false, n * h * w, &[n, c, h, w]).unwrap() else {
            panic!("evaluation mode expected");
        };
        let ops = run(bn
            .eval_by_tensor_ops(x.as_tensor(), &mean, &invstd)
            .unwrap());
        for (a, b) in kernel.iter().zip(&ops) {
            assert_eq!(a.len(), b.len());
            for (p, q) in a.iter().zip(b) {
                assert!((p - q).abs() < 1e-12, "{p} vs {q}");
            }
        }
    }
}
