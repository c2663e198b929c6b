//! Temperature schedules of the Gumbel-softmax.
use serde::{Deserialize, Serialize};

/// How the temperature moves over the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TauSchedule {
    /// `tau_max - (tau_max - tau_min) * epoch / (epochs - 1)`: GDAS (Dong & Yang, CVPR 2019,
    /// section 3.2; reference `AutoDL-Projects/exps/NAS-Bench-201-algos/GDAS.py`:
    /// `tau_max - (tau_max - tau_min) * epoch / (total_epoch - 1)`, `--tau_max 10
    /// --tau_min 0.1`). The last epoch runs at `tau_min`.
    Linear,
    /// `tau_max * decay^epoch`: FBNet (Wu et al. 2019, section 4.1: initial temperature 5.0,
    /// multiplied by 0.956 after every epoch), used by SNAS-style soft sampling too.
    Exponential,
}

/// The temperature at `epoch` (0-based) of `epochs`.
pub fn temperature(
    kind: TauSchedule,
    tau_max: f64,
    tau_min: f64,
    decay: f64,
    epoch: usize,
    epochs: usize,
) -> f64 {
    match kind {
        TauSchedule::Linear => {
            if epochs <= 1 {
                return tau_max;
            }
            let f = epoch.min(epochs - 1) as f64 / (epochs - 1) as f64;
            tau_max - (tau_max - tau_min) * f
        }
        TauSchedule::Exponential => tau_max * decay.powi(epoch as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_hand_values() {
        // GDAS, 250 epochs (the paper's CIFAR search): 10 at epoch 0, 0.1 at 249, and at
        // epoch 83: 10 - 9.9 * 83/249 = 6.7 exactly.
        let lin = |e| temperature(TauSchedule::Linear, 10.0, 0.1, 1.0, e, 250);
        assert_eq!(lin(0), 10.0);
        assert!((lin(249) - 0.1).abs() < 1e-12);
        assert!((lin(83) - 6.7).abs() < 1e-12);
        // FBNet: 5.0 * 0.956^e; e = 2: 5 * 0.913936 = 4.56968; e = 90: 5 * 0.956^90.
        let exp = |e| temperature(TauSchedule::Exponential, 5.0, 0.0, 0.956, e, 90);
        assert_eq!(exp(0), 5.0);
        assert!((exp(2) - 4.56968).abs() < 1e-12);
        assert!((exp(10) - 5.0 * 0.637_644_947_410_140_3).abs() < 1e-9);
        // One epoch only: the linear schedule stays at tau_max.
        assert_eq!(temperature(TauSchedule::Linear, 10.0, 0.1, 1.0, 0, 1), 10.0);
    }
}
