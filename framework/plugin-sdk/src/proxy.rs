//! Inside a plugin: the host's [`HostEnv`] callbacks seen as an ordinary
//! [`SearchEnv`], with a proxy [`SupernetTrainer`] and [`Estimator`], so that plugin code is
//! plain Rust against the nas-core traits.
//!
//! Trait methods that cannot return an error (`spec`, `epoch`, `describe`,
//! `steps_per_epoch`, `batch_size`, `weight_lr`, `queries`) stop the strategy's call when
//! their host callback fails: the call returns the host's error to the host (the plugin
//! instance is then poisoned, as after a panic).
use std::cell::OnceCell;

use nas_core::{
    ArchGradient, Architecture, Cost, Drive, Estimator, EvalStats, GradOrder, MixingWeights,
    NasError, Result, Score, SearchEnv, SpaceSpec, Split, StepStats, SupernetTrainer,
};

use crate::abi::*;
use crate::buffer::Received;
use crate::codec::{split_code, split_samples, EncodedDrive};
use crate::guest::HostFailure;
use crate::wire::{decode_error, Wire};

/// The host's callbacks, for the duration of one plugin call.
#[derive(Clone, Copy)]
struct Host<'a> {
    env: &'a HostEnv,
}

impl<'a> Host<'a> {
    /// Calls a callback with a fresh `err` slot and turns its status into a result.
    fn call(&self, what: &str, f: impl FnOnce(&HostEnv, *mut OwnedBuffer) -> Status) -> Result<()> {
        let mut err = OwnedBuffer::EMPTY;
        let status = f(self.env, &mut err);
        let err = self.received(err);
        match status {
            STATUS_OK => Ok(()),
            STATUS_ERROR => Err(decode_error(err.bytes().unwrap_or_default())),
            STATUS_PANIC => Err(NasError::Other(format!(
                "the host panicked in `{what}`: {}",
                err.text_lossy()
            ))),
            s => Err(NasError::Plugin(format!(
                "host callback `{what}` returned unknown status {s}"
            ))),
        }
    }

    fn received(&self, b: OwnedBuffer) -> Received {
        // SAFETY: every buffer a host callback writes was made by that host.
        unsafe { Received::new(b, self.env.free_buffer) }
    }

    /// Calls a callback that writes one buffer into `out`.
    fn call_out(
        &self,
        what: &str,
        f: impl FnOnce(&HostEnv, *mut OwnedBuffer, *mut OwnedBuffer) -> Status,
    ) -> Result<Received> {
        let mut out = OwnedBuffer::EMPTY;
        let r = self.call(what, |env, err| f(env, &mut out, err));
        let out = self.received(out);
        r.map(|()| out)
    }

    fn spec(&self, role: u32) -> Result<SpaceSpec> {
        let out = self.call_out("spec", |e, out, err| unsafe {
            (e.spec)(e.ctx, role, out, err)
        })?;
        SpaceSpec::from_wire(out.bytes()?)
    }
}

/// The value of an infallible trait method, or an unwind that carries the host's error.
fn or_unwind<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(Box::new(HostFailure(e))),
    }
}

/// The host environment seen as a [`SearchEnv`] (one per plugin call).
pub struct HostEnvProxy<'a> {
    host: Host<'a>,
    spec: OnceCell<SpaceSpec>,
    trainer: Option<ProxyTrainer<'a>>,
    estimator: Option<ProxyEstimator<'a>>,
}

impl<'a> HostEnvProxy<'a> {
    /// Wraps the table a host passed in.
    ///
    /// # Safety
    /// `env` must be null or point to a [`HostEnv`] that stays valid for `'a`, whose
    /// callbacks honour the contracts documented on [`HostEnv`].
    pub unsafe fn new(env: *const HostEnv) -> Result<Self> {
        if env.is_null() {
            return Err(NasError::Plugin("the host passed no environment".into()));
        }
        // SAFETY: guaranteed by the caller.
        let env: &'a HostEnv = unsafe { &*env };
        if env.size < std::mem::size_of::<HostEnv>() {
            return Err(NasError::Plugin(format!(
                "the host's environment table has {} bytes, this plugin needs {}",
                env.size,
                std::mem::size_of::<HostEnv>()
            )));
        }
        let host = Host { env };
        // SAFETY: the context belongs to these callbacks.
        let (has_trainer, has_estimator) = unsafe {
            (
                (env.has_trainer)(env.ctx) != 0,
                (env.has_estimator)(env.ctx) != 0,
            )
        };
        Ok(HostEnvProxy {
            host,
            spec: OnceCell::new(),
            trainer: has_trainer.then(|| ProxyTrainer {
                host,
                spec: OnceCell::new(),
            }),
            estimator: has_estimator.then(|| ProxyEstimator {
                host,
                spec: OnceCell::new(),
            }),
        })
    }
}

impl SearchEnv for HostEnvProxy<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.spec
            .get_or_init(|| or_unwind(self.host.spec(ROLE_ENV)))
    }

    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        self.trainer.as_mut().map(|t| t as &mut dyn SupernetTrainer)
    }

    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        self.estimator.as_mut().map(|e| e as &mut dyn Estimator)
    }

    fn derive(&self, weights: &MixingWeights, mode: &str) -> Result<Architecture> {
        let flat = weights.flatten();
        let shape: Vec<usize> = weights.0.iter().map(Vec::len).collect();
        let out = self.host.call_out("derive", |e, out, err| unsafe {
            (e.derive)(
                e.ctx,
                Slice::new(&flat),
                Slice::new(&shape),
                Slice::text(mode),
                out,
                err,
            )
        })?;
        Architecture::from_wire(out.bytes()?)
    }

    fn cost(&self, arch: &Architecture) -> Result<Cost> {
        let json = arch.to_wire()?;
        let out = self.host.call_out("cost", |e, out, err| unsafe {
            (e.cost)(e.ctx, Slice::new(&json), out, err)
        })?;
        Cost::from_wire(out.bytes()?)
    }

    fn describe(&self, arch: &Architecture) -> String {
        or_unwind((|| {
            let json = arch.to_wire()?;
            let out = self.host.call_out("describe", |e, out, err| unsafe {
                (e.describe)(e.ctx, Slice::new(&json), out, err)
            })?;
            out.text().map(str::to_string)
        })())
    }

    fn epoch(&self) -> (usize, usize) {
        let (mut epoch, mut total) = (0, 0);
        or_unwind(self.host.call("epoch", |e, err| unsafe {
            (e.epoch)(e.ctx, &mut epoch, &mut total, err)
        }));
        (epoch, total)
    }
}

/// The host's trainer seen as a [`SupernetTrainer`].
pub struct ProxyTrainer<'a> {
    host: Host<'a>,
    spec: OnceCell<SpaceSpec>,
}

impl ProxyTrainer<'_> {
    fn scalar<T: Default>(
        &self,
        what: &str,
        f: unsafe extern "C" fn(*mut std::ffi::c_void, *mut T, *mut OwnedBuffer) -> Status,
    ) -> Result<T> {
        let mut v = T::default();
        self.host
            .call(what, |e, err| unsafe { f(e.ctx, &mut v, err) })?;
        Ok(v)
    }
}

impl SupernetTrainer for ProxyTrainer<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.spec
            .get_or_init(|| or_unwind(self.host.spec(ROLE_TRAINER)))
    }

    fn steps_per_epoch(&self) -> usize {
        or_unwind(self.scalar("steps_per_epoch", self.host.env.steps_per_epoch))
    }

    fn batch_size(&self) -> usize {
        or_unwind(self.scalar("batch_size", self.host.env.batch_size))
    }

    fn begin_epoch(&mut self, epoch: usize) -> Result<()> {
        self.host.call("begin_epoch", |e, err| unsafe {
            (e.begin_epoch)(e.ctx, epoch, err)
        })
    }

    fn weight_lr(&self) -> f64 {
        or_unwind(self.scalar("weight_lr", self.host.env.weight_lr))
    }

    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats> {
        let d = EncodedDrive::new(drive)?;
        let view = d.view();
        let mut out = StepStatsC::default();
        self.host.call("train_weights", |e, err| unsafe {
            (e.train_weights)(e.ctx, &view, &mut out, err)
        })?;
        Ok(out.into())
    }

    fn arch_gradient(&mut self, drive: &Drive, order: GradOrder) -> Result<ArchGradient> {
        let d = EncodedDrive::new(drive)?;
        let view = d.view();
        let mut head = ArchGradC::default();
        let (mut grads, mut shape) = (OwnedBuffer::EMPTY, OwnedBuffer::EMPTY);
        let r = self.host.call("arch_gradient", |e, err| unsafe {
            (e.arch_gradient)(
                e.ctx,
                &view,
                order.into(),
                &mut head,
                &mut grads,
                &mut shape,
                err,
            )
        });
        let (grads, shape) = (self.host.received(grads), self.host.received(shape));
        r?;
        Ok(ArchGradient {
            loss: head.loss,
            accuracy: head.accuracy,
            grads: split_samples(grads.floats()?, shape.sizes()?, head.samples)?,
            condition_grad: (head.has_condition_grad != 0).then_some(head.condition_grad),
        })
    }

    fn evaluate(
        &mut self,
        drive: &Drive,
        split: Split,
        max_batches: Option<usize>,
    ) -> Result<EvalStats> {
        let d = EncodedDrive::new(drive)?;
        let view = d.view();
        let mut out = EvalStatsC::default();
        let max = max_batches.unwrap_or(NO_BATCH_LIMIT);
        self.host.call("evaluate", |e, err| unsafe {
            (e.evaluate)(e.ctx, &view, split_code(split), max, &mut out, err)
        })?;
        Ok(out.into())
    }
}

/// The host's estimator seen as an [`Estimator`].
pub struct ProxyEstimator<'a> {
    host: Host<'a>,
    spec: OnceCell<SpaceSpec>,
}

impl Estimator for ProxyEstimator<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.spec
            .get_or_init(|| or_unwind(self.host.spec(ROLE_ESTIMATOR)))
    }

    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        let json = arch.to_wire()?;
        let out = self.host.call_out("estimate", |e, out, err| unsafe {
            (e.estimate)(e.ctx, Slice::new(&json), out, err)
        })?;
        Score::from_wire(out.bytes()?)
    }

    fn queries(&self) -> u64 {
        let mut n = 0u64;
        or_unwind(self.host.call("queries", |e, err| unsafe {
            (e.queries)(e.ctx, &mut n, err)
        }));
        n
    }
}
