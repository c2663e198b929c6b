//! Drop path (Larsson et al. 2017, FractalNet; as DARTS' retraining uses it: quark0/darts
//! `utils.drop_path`, applied to every non-identity path of a cell in training): each
//! example's path is zeroed with probability `p` and kept scaled by `1/(1-p)` otherwise.
//!
//! The factors multiply a cell node's inputs, which the node then adds: [`drop_path_sum`] does
//! both in one op ([`nas_ops::weighted_sum`] with per-example weights `[N, K]`). Written as
//! `x.broadcast_mul(mask)` per path and an addition, candle's backward would also compute the
//! gradient of the constant mask as a full-size product and hold it, broadcast, in the gradient
//! store until the end of the backward (measured: DARTS_V2's retraining step at 20 cells x 36
//! channels, batch 32, 4.1 GB -> 2.7 GB peak RSS and ~10% of the step's time).
use candle_core::{Result, Tensor};
use rand::Rng;

/// The drop-path factors of a batch of `n` examples: 0 with probability `p` (the example's
/// path dropped), else `1/(1-p)` (one uniform draw per example, in order, from `rng`).
pub fn drop_mask(rng: &mut impl Rng, n: usize, p: f64) -> Vec<f64> {
    let keep = 1.0 - p;
    (0..n)
        .map(|_| {
            if rng.random::<f64>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect()
}

/// `sum_k factors_k[n] * ys[k][n]` for every example `n`: a cell node's inputs `ys` (one shape,
/// batch first, at least one), each with its drop-path factors ([`drop_mask`]) or `None` (kept
/// whole: an identity path, or no drop path). Without any factors, the plain sum.
/// Differentiable with respect to every input (the factors are constants).
pub fn drop_path_sum(ys: &[Tensor], masks: &[Option<Vec<f64>>]) -> Result<Tensor> {
    let Some(first) = ys.first() else {
        candle_core::bail!("drop_path_sum: no inputs");
    };
    if masks.len() != ys.len() {
        candle_core::bail!(
            "drop_path_sum: {} inputs but {} factor lists",
            ys.len(),
            masks.len()
        );
    }
    if masks.iter().all(Option::is_none) {
        let mut acc = first.clone();
        for y in &ys[1..] {
            acc = (acc + y)?;
        }
        return Ok(acc);
    }
    let (n, k) = (first.dims().first().copied().unwrap_or(0), ys.len());
    let mut w = vec![1.0; n * k];
    for (i, m) in masks.iter().enumerate() {
        if let Some(m) = m {
            if m.len() != n {
                candle_core::bail!("drop_path_sum: {} factors for a batch of {n}", m.len());
            }
            for (e, &f) in m.iter().enumerate() {
                w[e * k + i] = f;
            }
        }
    }
    let w = Tensor::from_vec(w, (n, k), first.device())?.to_dtype(first.dtype())?;
    nas_ops::weighted_sum(ys, &w)
}

#[cfg(test)]
mod tests {
    use super::{drop_mask, drop_path_sum};
    use candle_core::{Device, Tensor, Var};
    use rand::SeedableRng;

    /// Every factor is 0 or `1/(1-p)`, about a fraction `p` of them 0; `p = 0` keeps all.
    #[test]
    fn drop_mask_zeroes_about_p_and_scales_the_rest() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let m = drop_mask(&mut rng, 10_000, 0.2);
        assert!(m.iter().all(|&f| f == 0.0 || f == 1.0 / 0.8));
        let dropped = m.iter().filter(|&&f| f == 0.0).count();
        assert!(
            (1_800..2_200).contains(&dropped),
            "{dropped} of 10000 dropped at p = 0.2"
        );
        assert!(drop_mask(&mut rng, 100, 0.0).iter().all(|&f| f == 1.0));
    }

    /// Without factors the plain sum; mismatched factor lists are errors.
    #[test]
    fn drop_path_sum_without_factors_adds_and_refuses_bad_lists() {
        let dev = Device::Cpu;
        let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], (2, 2), &dev).unwrap();
        let b = Tensor::from_vec(vec![0.5f64, 0.25, -1.0, 2.0], (2, 2), &dev).unwrap();
        let y = drop_path_sum(&[a.clone(), b.clone()], &[None, None]).unwrap();
        let got = y.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(got, vec![1.5, 2.25, 2.0, 6.0]);
        assert!(drop_path_sum(&[a.clone(), b.clone()], &[None]).is_err());
        let e = drop_path_sum(&[a, b], &[Some(vec![1.0; 3]), None]).unwrap_err();
        assert!(e.to_string().contains("3 factors for a batch of 2"), "{e}");
        assert!(drop_path_sum(&[], &[]).is_err());
    }

    /// The node sum with drop path equals `y_0 * m_0[n] + y_1 + y_2 * m_2[n]` built by hand
    /// (the middle input an identity, kept whole), and each input's gradient is the upstream
    /// gradient times its factor, example by example; the factors get none.
    #[test]
    fn drop_path_sum_scales_each_example_of_each_path() {
        let dev = Device::Cpu;
        let (n, c, hw) = (3, 2, 4);
        let len = n * c * hw;
        let ys: Vec<Var> = (0..3)
            .map(|k| {
                let v: Vec<f64> = (0..len).map(|i| (i * (k + 2)) as f64 * 0.1 - 1.0).collect();
                Var::from_vec(v, (n, c, 2, 2), &dev).unwrap()
            })
            .collect();
        let masks = vec![
            Some(vec![1.25, 0.0, 1.25]),
            None,
            Some(vec![0.0, 0.0, 1.25]),
        ];
        let tensors: Vec<Tensor> = ys.iter().map(|v| v.as_tensor().clone()).collect();
        let out = drop_path_sum(&tensors, &masks).unwrap();
        let got = out.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let y: Vec<Vec<f64>> = tensors
            .iter()
            .map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
            .collect();
        let factor = |k: usize, e: usize| masks[k].as_ref().map_or(1.0, |m| m[e]);
        for i in 0..len {
            let e = i / (c * hw);
            let want = y[0][i] * factor(0, e) + y[1][i] + y[2][i] * factor(2, e);
            assert!(
                (got[i] - want).abs() < 1e-12,
                "element {i}: {} vs {want}",
                got[i]
            );
        }
        // d/dy_k of sum(g * out) = g * factor_k[n].
        let g: Vec<f64> = (0..len).map(|i| 0.5 + i as f64 * 0.01).collect();
        let gt = Tensor::from_vec(g.clone(), out.shape(), &dev).unwrap();
        let grads = (&out * &gt).unwrap().sum_all().unwrap().backward().unwrap();
        for (k, v) in ys.iter().enumerate() {
            let gk = grads.get(v.as_tensor()).unwrap();
            let gk = gk.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for i in 0..len {
                let want = g[i] * factor(k, i / (c * hw));
                assert!((gk[i] - want).abs() < 1e-12, "input {k} element {i}");
            }
        }
    }
}
