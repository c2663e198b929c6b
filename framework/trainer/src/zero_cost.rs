//! Zero-cost proxies: scores of an untrained network from one minibatch (or none), used to
//! rank architectures without training them.
//!
//! * [`naswot`]: Mellor, Turner, Storkey, Crowley, "Neural Architecture Search without
//!   Training", ICML 2021 (v1 score; reference BayesWatch/nas-without-training
//!   `score_networks.py`): the binary codes `c_i` of every ReLU's input for each example
//!   `i` of a minibatch give `K_H[i][j] = sum over ReLUs (c_i . c_j + (1 - c_i) . (1 - c_j))`
//!   (the number of units minus the Hamming distance), and the score is `ln |det K_H|`.
//!   The network runs in training mode (batch statistics), as the reference's does.
//! * [`synflow`]: Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks without any data
//!   by iteratively conserving synaptic flow", NeurIPS 2020, as a NAS proxy in Abdelfattah et
//!   al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021 (reference
//!   mohsaied/zero-cost-nas `synflow.py`): in f64, every parameter replaced by its absolute
//!   value, an all-ones input of one example, `R = sum(output)`, score `sum |theta * dR/dtheta|`
//!   over the convolution and linear weights.
//! * [`grad_norm`]: Abdelfattah et al. 2021 (`grad_norm.py`): the sum over the convolution and
//!   linear weights of `||dL/dW||_2` for the cross-entropy `L` of one minibatch, training mode.
//!
//! Convolution and linear weights are the parameters of rank 2 or more (batch-norm scales and
//! every bias are rank 1), the reference's `(nn.Conv2d, nn.Linear)` layers.
//!
//! Differences from the references: NASWOT counts every ReLU the forward pass calls, where
//! the reference counts only the ReLUs its backward pass visited (the same set unless an op's
//! output never reaches the logits); synflow keeps the batch norms, in evaluation mode at
//! their initial statistics (mean 0, variance 1: the identity up to `1/sqrt(1 + eps)`), where
//! the reference builds the network without them (`bn=False`).
use candle_core::{DType, Tensor};
use nas_core::{NasError, Result};
use nas_model::Network;

use crate::bridge::{loss_and_correct, terr};

/// `(sign, ln |det a|)` of a square matrix by LU decomposition with partial pivoting; sign 0
/// (and `-inf`) for a singular one.
pub fn slogdet(a: &[Vec<f64>]) -> (f64, f64) {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a.to_vec();
    let (mut sign, mut logdet) = (1.0, 0.0);
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))
            .unwrap_or(col);
        if m[pivot][col] == 0.0 {
            return (0.0, f64::NEG_INFINITY);
        }
        if pivot != col {
            m.swap(pivot, col);
            sign = -sign;
        }
        let p = m[col][col];
        if p < 0.0 {
            sign = -sign;
        }
        logdet += p.abs().ln();
        let (top, rest) = m.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for row in rest.iter_mut() {
            let f = row[col] / p;
            if f != 0.0 {
                for (x, &y) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * y;
                }
            }
        }
    }
    (sign, logdet)
}

/// The NASWOT kernel `K_H` of the ReLU inputs `acts` (each `[N, ...]`, in any float dtype).
pub fn naswot_kernel(acts: &[Tensor]) -> Result<Vec<Vec<f64>>> {
    let n = match acts.first() {
        Some(a) => a.dim(0).map_err(terr)?,
        None => return Err(NasError::Other("NASWOT: the network has no ReLU".into())),
    };
    let mut k = Tensor::zeros((n, n), DType::F64, acts[0].device()).map_err(terr)?;
    for a in acts {
        let c = a
            .flatten_from(1)
            .and_then(|x| x.gt(0.0))
            .and_then(|x| x.to_dtype(DType::F64))
            .map_err(terr)?;
        let not_c = c.affine(-1.0, 1.0).map_err(terr)?;
        let kk = c
            .matmul(&c.t().map_err(terr)?)
            .and_then(|x| x.add(&not_c.matmul(&not_c.t()?)?))
            .map_err(terr)?;
        k = (k + kk).map_err(terr)?;
    }
    k.to_vec2::<f64>().map_err(terr)
}

/// NASWOT's score `ln |det K_H|` of `net` on the minibatch `x` (training mode).
pub fn naswot(net: &dyn Network, x: &Tensor) -> Result<f64> {
    let (r, acts) = nas_ops::with_relu_probe(|| net.forward(x, true));
    r.map_err(terr)?;
    Ok(slogdet(&naswot_kernel(&acts)?).1)
}

fn is_weight(t: &Tensor) -> bool {
    t.rank() >= 2
}

/// synflow's score of `net` (built in f64) for inputs of shape `[C, H, W]`. The parameters
/// are replaced by their absolute values for the computation and restored afterwards.
pub fn synflow(net: &dyn Network, input: (usize, usize, usize)) -> Result<f64> {
    let vars: Vec<_> = net
        .params()
        .named()
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    let saved: Vec<Tensor> = vars
        .iter()
        .map(|v| v.as_tensor().copy())
        .collect::<candle_core::Result<_>>()
        .map_err(terr)?;
    let run = || -> Result<f64> {
        for v in &vars {
            v.set(&v.as_tensor().abs().map_err(terr)?).map_err(terr)?;
        }
        let dev = vars
            .first()
            .map(|v| v.as_tensor().device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let dtype = vars.first().map_or(DType::F64, |v| v.as_tensor().dtype());
        let ones = Tensor::ones((1, input.0, input.1, input.2), dtype, &dev).map_err(terr)?;
        let (y, _) = net.forward(&ones, false).map_err(terr)?;
        let r = y.sum_all().map_err(terr)?;
        let grads = r.backward().map_err(terr)?;
        let mut score = 0.0;
        for v in &vars {
            if !is_weight(v.as_tensor()) {
                continue;
            }
            if let Some(g) = grads.get(v.as_tensor()) {
                let s = (v.as_tensor() * g)
                    .and_then(|t| t.abs())
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.to_dtype(DType::F64))
                    .and_then(|t| t.to_scalar::<f64>())
                    .map_err(terr)?;
                score += s;
            }
        }
        Ok(score)
    };
    let out = run();
    for (v, t) in vars.iter().zip(&saved) {
        v.set(t).map_err(terr)?;
    }
    out
}

/// grad_norm's score of `net` on the minibatch `(x, y)` (training mode): the sum of the
/// L2 norms of the cross-entropy's gradients with respect to the convolution and linear
/// weights.
pub fn grad_norm(net: &dyn Network, x: &Tensor, y: &Tensor) -> Result<f64> {
    let (logits, _) = net.forward(x, true).map_err(terr)?;
    let (loss, _) = loss_and_correct(&logits, y)?;
    let grads = loss.backward().map_err(terr)?;
    let mut score = 0.0;
    for (_, v) in net.params().named() {
        if !is_weight(v.as_tensor()) {
            continue;
        }
        if let Some(g) = grads.get(v.as_tensor()) {
            let s = g
                .sqr()
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_dtype(DType::F64))
                .and_then(|t| t.to_scalar::<f64>())
                .map_err(terr)?;
            score += s.sqrt();
        }
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slogdet_matches_hand_determinants() {
        // det [[4, 3], [6, 3]] = 12 - 18 = -6.
        let (s, l) = slogdet(&[vec![4.0, 3.0], vec![6.0, 3.0]]);
        assert_eq!(s, -1.0);
        assert!((l - 6f64.ln()).abs() < 1e-12);
        // A permutation with a pivot swap: det [[0, 2, 0], [1, 0, 0], [0, 0, 3]] = -6.
        let (s, l) = slogdet(&[
            vec![0.0, 2.0, 0.0],
            vec![1.0, 0.0, 0.0],
            vec![0.0, 0.0, 3.0],
        ]);
        assert_eq!(s, -1.0);
        assert!((l - 6f64.ln()).abs() < 1e-12);
        assert_eq!(slogdet(&[vec![1.0, 2.0], vec![2.0, 4.0]]).0, 0.0);
    }

    #[test]
    fn the_naswot_kernel_counts_agreements_by_hand() {
        // Two examples, one ReLU input of 3 units: codes (1,0,1) and (1,1,0).
        // K[0][0] = 3, K[1][1] = 3, K[0][1] = 3 - Hamming 2 = 1.
        let a = Tensor::new(
            &[[0.5f32, -1.0, 2.0], [0.1, 0.3, -0.2]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let k = naswot_kernel(&[a.clone(), a]).unwrap();
        assert_eq!(k, vec![vec![6.0, 2.0], vec![2.0, 6.0]]);
        assert!((slogdet(&k).1 - 32f64.ln()).abs() < 1e-12);
    }
}
