//! The zero-cost proxies on a network small enough to compute them by hand:
//! `x -> conv 1x1 (W1, 2 -> 3) -> ReLU -> global average pool -> linear (W2, b2, 3 -> 2)`.
//! synflow against its closed form, grad_norm against central differences of the loss,
//! NASWOT against the kernel of the ReLU inputs computed here without the network.
use candle_core::{DType, Device, Tensor};
use nas_model::{Init, Network, ParamStore};
use nas_ops::BatchNorm2d;
use nas_trainer::zero_cost::{grad_norm, naswot, slogdet, synflow};

struct Tiny {
    store: ParamStore,
}

const W1: [f64; 6] = [0.5, -1.0, 0.25, 2.0, -0.75, 1.5]; // [3, 2, 1, 1]
const W2: [f64; 6] = [1.0, -2.0, 0.5, -0.25, 0.75, -1.5]; // [2, 3]
const B2: [f64; 2] = [0.1, -0.3];

impl Tiny {
    fn new() -> Self {
        let mut store = ParamStore::new(Device::Cpu, DType::F64, nas_core::component_rng(0, "t"));
        let set = |store: &mut ParamStore, name: &str, shape: &[usize], v: &[f64]| {
            let var = store.var(name, shape, Init::Const(0.0)).unwrap();
            var.set(&Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap())
                .unwrap();
        };
        set(&mut store, "conv.weight", &[3, 2, 1, 1], &W1);
        set(&mut store, "fc.weight", &[2, 3], &W2);
        set(&mut store, "fc.bias", &[2], &B2);
        Tiny { store }
    }
    fn w(&self, name: &str) -> Tensor {
        self.store.get(name).unwrap().as_tensor().clone()
    }
}

impl Network for Tiny {
    fn forward(&self, x: &Tensor, _train: bool) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let h = nas_ops::conv2d(x, &self.w("conv.weight"), 1, 0)?;
        let h = nas_ops::relu(&h)?;
        let p = nas_ops::global_avg_pool(&h)?;
        let y = p
            .matmul(&self.w("fc.weight").t()?)?
            .broadcast_add(&self.w("fc.bias"))?;
        Ok((y, None))
    }
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        vec![]
    }
    fn set_drop_path(&self, _p: f64) {}
    fn param_count(&self) -> usize {
        14
    }
    fn flops(&self) -> f64 {
        0.0
    }
}

fn input() -> (Tensor, Tensor) {
    // 3 examples of 2 channels, 2x2 pixels; labels 0, 1, 1.
    let x: Vec<f64> = (0..24).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
    (
        Tensor::from_vec(x, (3, 2, 2, 2), &Device::Cpu).unwrap(),
        Tensor::new(&[0u32, 1, 1], &Device::Cpu).unwrap(),
    )
}

#[test]
fn synflow_equals_its_closed_form() {
    // With |W| and an all-ones input: h_c = sum_i |W1[c][i]| at every pixel (ReLU passes it),
    // R = sum_k (sum_c |W2[k][c]| h_c + |b_k|); dR/dW2[k][c] = h_c, dR/dW1[c][i] =
    // sum_k |W2[k][c]|. Score = sum |W2| h + sum |W1[c][i]| sum_k |W2[k][c]| (biases excluded).
    let h: Vec<f64> = (0..3)
        .map(|c| W1[2 * c].abs() + W1[2 * c + 1].abs())
        .collect();
    let col: Vec<f64> = (0..3).map(|c| W2[c].abs() + W2[3 + c].abs()).collect();
    let mut want = 0.0;
    for k in 0..2 {
        for c in 0..3 {
            want += W2[3 * k + c].abs() * h[c];
        }
    }
    for c in 0..3 {
        for i in 0..2 {
            want += W1[2 * c + i].abs() * col[c];
        }
    }
    let net = Tiny::new();
    let got = synflow(&net, (2, 2, 2)).unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    // The signs are restored.
    assert_eq!(
        net.w("conv.weight")
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap(),
        W1
    );
}

#[test]
fn grad_norm_equals_the_norms_of_finite_difference_gradients() {
    let net = Tiny::new();
    let (x, y) = input();
    let got = grad_norm(&net, &x, &y).unwrap();
    let loss = |net: &Tiny| -> f64 {
        let (l, _) = net.forward(&x, true).unwrap();
        nas_trainer::bridge::loss_and_correct(&l, &y)
            .unwrap()
            .0
            .to_scalar::<f64>()
            .unwrap()
    };
    let h = 1e-6;
    let mut want = 0.0;
    for (name, vals) in [("conv.weight", W1), ("fc.weight", W2)] {
        let var = net.store.get(name).unwrap().clone();
        let shape = var.as_tensor().dims().to_vec();
        let mut sq = 0.0;
        for i in 0..vals.len() {
            let at = |d: f64| {
                let mut v = vals;
                v[i] += d;
                var.set(&Tensor::from_vec(v.to_vec(), shape.as_slice(), &Device::Cpu).unwrap())
                    .unwrap();
                loss(&net)
            };
            let g = (at(h) - at(-h)) / (2.0 * h);
            sq += g * g;
        }
        var.set(&Tensor::from_vec(vals.to_vec(), shape.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
        want += f64::sqrt(sq);
    }
    assert!((got - want).abs() < 1e-6 * want.max(1.0), "{got} vs {want}");
}

#[test]
fn naswot_is_the_log_determinant_of_the_relu_code_kernel() {
    let net = Tiny::new();
    let (x, _) = input();
    let got = naswot(&net, &x).unwrap();
    // The ReLU's input, computed here: conv 1x1 = W1 . x per pixel.
    let xv: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let codes: Vec<Vec<bool>> = (0..3)
        .map(|n| {
            let mut c = Vec::new();
            for o in 0..3 {
                for p in 0..4 {
                    let v = W1[2 * o] * xv[n * 8 + p] + W1[2 * o + 1] * xv[n * 8 + 4 + p];
                    c.push(v > 0.0);
                }
            }
            c
        })
        .collect();
    let k: Vec<Vec<f64>> = (0..3)
        .map(|i| {
            (0..3)
                .map(|j| {
                    codes[i]
                        .iter()
                        .zip(&codes[j])
                        .filter(|(a, b)| a == b)
                        .count() as f64
                })
                .collect()
        })
        .collect();
    let want = slogdet(&k).1;
    assert!(want.is_finite());
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}
