//! What a strategy sends to a trainer, and the gradients it gets back: plain data only.
use serde::{Deserialize, Serialize};

use crate::{Architecture, NasError, Result, SpaceSpec};

/// Mixing weights (or a gradient with respect to them), indexed `[decision][option]`.
///
/// For DARTS these are `softmax(alpha)` per edge; for a Gumbel strategy a relaxed sample;
/// the trainer only ever sees these numbers, never the parametrisation behind them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixingWeights(pub Vec<Vec<f32>>);

impl MixingWeights {
    /// All zeros in the shape of `spec`.
    pub fn zeros(spec: &SpaceSpec) -> Self {
        MixingWeights(spec.shape().into_iter().map(|n| vec![0.0; n]).collect())
    }

    /// Uniform weights (1/n per option) in the shape of `spec`.
    pub fn uniform(spec: &SpaceSpec) -> Self {
        MixingWeights(
            spec.shape()
                .into_iter()
                .map(|n| vec![1.0 / n as f32; n])
                .collect(),
        )
    }

    /// One-hot weights of a discrete architecture.
    pub fn one_hot(spec: &SpaceSpec, arch: &Architecture) -> Result<Self> {
        spec.check(arch)?;
        Ok(MixingWeights(
            spec.shape()
                .into_iter()
                .zip(&arch.choices)
                .map(|(n, &c)| {
                    let mut v = vec![0.0; n];
                    v[c] = 1.0;
                    v
                })
                .collect(),
        ))
    }

    /// Checks the shape against `spec`.
    pub fn check_shape(&self, spec: &SpaceSpec) -> Result<()> {
        let shape = spec.shape();
        if self.0.len() != shape.len() || self.0.iter().zip(&shape).any(|(w, &n)| w.len() != n) {
            return Err(NasError::Strategy(format!(
                "mixing weights have shape {:?}, space `{}` needs {:?}",
                self.0.iter().map(Vec::len).collect::<Vec<_>>(),
                spec.space,
                shape
            )));
        }
        Ok(())
    }

    /// Flattens to one buffer, decision after decision.
    pub fn flatten(&self) -> Vec<f32> {
        self.0.iter().flatten().copied().collect()
    }

    /// Rebuilds from a flat buffer and a shape; `None` when the lengths disagree.
    pub fn from_flat(flat: &[f32], shape: &[usize]) -> Option<Self> {
        if flat.len() != shape.iter().sum::<usize>() {
            return None;
        }
        let mut out = Vec::with_capacity(shape.len());
        let mut at = 0;
        for &n in shape {
            out.push(flat[at..at + n].to_vec());
            at += n;
        }
        Some(MixingWeights(out))
    }

    /// True when every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.0.iter().flatten().all(|v| v.is_finite())
    }
}

/// How the supernet is driven for one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriveKind {
    /// Continuous relaxation, the same weights for every example (DARTS, DARTS-CC softmax).
    Mixed {
        /// `[decision][option]` weights.
        weights: MixingWeights,
    },
    /// One set of weights per example of the batch (Gumbel-softmax with one sample per
    /// example, as DARTS-CC does). Its length must equal the trainer's batch size.
    MixedPerSample {
        /// `[example][decision][option]` weights.
        weights: Vec<MixingWeights>,
    },
    /// Weights applied only to the options whose weight is non-zero: the other options are
    /// not computed at all (GDAS / straight-through hard sampling, ProxylessNAS gates).
    SelectedOnly {
        /// `[decision][option]` weights; zeros mark options that are skipped.
        weights: MixingWeights,
    },
    /// One hard (or sparse) set of weights per example, computed per example: option `k` of
    /// decision `d` runs only on the examples whose weight for it is non-zero, and each
    /// example's output is the sum of its own weighted options (GDAS with one
    /// straight-through sample per example, Dong & Yang 2019; the per-example form of
    /// [`DriveKind::SelectedOnly`]). Options no example selected are not computed at all;
    /// batch norms inside an option see only the examples routed to it. The gradient
    /// `dL/dw[e][d][k]` is `<dL/dout_e, o_k(x_e)>` for the selected options and zero for the
    /// others. Its length must be at least the trainer's batch size (a short last batch
    /// uses the first sets).
    SelectedPerSample {
        /// `[example][decision][option]` weights; zeros mark options not computed.
        weights: Vec<MixingWeights>,
    },
    /// Binary gates with an active set separate from the gate values (ProxylessNAS, Cai et
    /// al. 2019, section 3.2): decision `d` outputs `sum_{k in active[d]} g[d][k] * o_k(x)`.
    /// Only the active options are computed and kept in memory; every active option's gate
    /// gets its gradient `dL/dg_k = <dL/dout, o_k(x)>`, also when its gate is zero (the
    /// unsampled one of ProxylessNAS' two paths), while inactive options get a zero
    /// gradient. Check with [`check_active`].
    Gated {
        /// `[decision][option]` gate values.
        weights: MixingWeights,
        /// Per decision, the options computed: strictly increasing, in range, non-empty.
        active: Vec<Vec<usize>>,
    },
    /// Discrete paths. One path: SPOS. Several: gradients of all are accumulated on the
    /// same batch before one optimizer step (FairNAS strict fairness).
    Paths {
        /// The paths.
        archs: Vec<Architecture>,
    },
}

/// A drive plus the optional conditioning scalar (the hypernet's normalised lambda `t`,
/// for a lambda-conditioned classifier head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drive {
    /// How the supernet is driven.
    pub kind: DriveKind,
    /// Conditioning scalar in `[0, 1]`, when the space has a conditioned head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<f32>,
}

impl Drive {
    /// Shared mixing weights, no conditioning.
    pub fn mixed(weights: MixingWeights) -> Self {
        Drive {
            kind: DriveKind::Mixed { weights },
            condition: None,
        }
    }

    /// A single discrete path.
    pub fn path(arch: Architecture) -> Self {
        Drive {
            kind: DriveKind::Paths { archs: vec![arch] },
            condition: None,
        }
    }

    /// Several discrete paths, gradients accumulated.
    pub fn paths(archs: Vec<Architecture>) -> Self {
        Drive {
            kind: DriveKind::Paths { archs },
            condition: None,
        }
    }

    /// Binary gates: `weights` applied to the `active` options only (see
    /// [`DriveKind::Gated`]).
    pub fn gated(weights: MixingWeights, active: Vec<Vec<usize>>) -> Self {
        Drive {
            kind: DriveKind::Gated { weights, active },
            condition: None,
        }
    }

    /// Sets the conditioning scalar.
    pub fn with_condition(mut self, t: f32) -> Self {
        self.condition = Some(t);
        self
    }
}

/// Checks the active sets of a [`DriveKind::Gated`] drive against `spec`: one set per
/// decision, each non-empty, strictly increasing and in range.
pub fn check_active(active: &[Vec<usize>], spec: &SpaceSpec) -> Result<()> {
    let shape = spec.shape();
    if active.len() != shape.len() {
        return Err(NasError::Strategy(format!(
            "gated drive has {} active sets, space `{}` has {} decisions",
            active.len(),
            spec.space,
            shape.len()
        )));
    }
    for (d, (set, &n)) in active.iter().zip(&shape).enumerate() {
        let ordered = set.windows(2).all(|w| w[0] < w[1]);
        if set.is_empty() || !ordered || set.iter().any(|&k| k >= n) {
            return Err(NasError::Strategy(format!(
                "gated drive: active set {set:?} of decision {d} (`{}`) must be non-empty, \
                 strictly increasing and below {n}",
                spec.decisions[d].key
            )));
        }
    }
    Ok(())
}

/// `order:` in a gradient strategy's params (`darts`, `darts_cc`): which architecture
/// gradient it asks for; a value other than `first` or `second` fails when the params are
/// decoded, naming the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderSetting {
    /// The first-order approximation (DARTS eq. 6 with `xi = 0`).
    First,
    /// The unrolled second-order gradient (DARTS eq. 7-8).
    Second,
}

impl std::fmt::Display for OrderSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrderSetting::First => "first",
            OrderSetting::Second => "second",
        })
    }
}

impl OrderSetting {
    /// The trainer's gradient order, with virtual step `xi` for the second order.
    pub fn grad_order(self, xi: Option<f64>) -> GradOrder {
        match self {
            OrderSetting::First => GradOrder::First,
            OrderSetting::Second => GradOrder::Second { xi },
        }
    }
}

/// Order of the architecture gradient (DARTS, Liu et al. 2019, section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "order", rename_all = "snake_case")]
pub enum GradOrder {
    /// `dL_val(w, alpha)/d alpha` at the current weights.
    First,
    /// The unrolled gradient at `w' = w - xi * dL_train/dw`, with the Hessian-vector
    /// product by central finite differences. `xi = None` uses the current weight
    /// learning rate, as the DARTS reference code does.
    Second {
        /// Virtual step size; `None` = current weight learning rate.
        xi: Option<f64>,
    },
}

/// The trainer's answer to an architecture-gradient request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchGradient {
    /// Validation loss (cross-entropy) of the batch, before any strategy penalty.
    pub loss: f64,
    /// Validation accuracy of the batch, in `[0, 1]`.
    pub accuracy: f64,
    /// `dL/d weights`: one entry for shared weights, one per example for
    /// [`DriveKind::MixedPerSample`]. For [`DriveKind::Gated`] the gradient with respect to
    /// the gates, zero for inactive options.
    pub grads: Vec<MixingWeights>,
    /// `dL/d condition` when a conditioning scalar was given and the head uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_grad: Option<f64>,
}
