//! The DARTS operations as this space composes them (SepConv, DilConv, FactorizedReduce,
//! the search's MixedOp with softmax weights) against PyTorch's forward and backward on
//! the golden tensors of `shared/data/golden` (computed from the quark0/darts operation
//! code in float64). Loss `L = sum(y * gy)`; every gradient is compared.
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use nas_model::ParamStore;
use nas_space_darts::ops::{Op, PRIMITIVES};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/golden/darts_ops.safetensors"
);

fn golden() -> (HashMap<String, Tensor>, Vec<serde_json::Value>) {
    let t = candle_core::safetensors::load(GOLDEN, &Device::Cpu).expect("golden file");
    let bytes = std::fs::read(GOLDEN).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let m = meta.metadata().as_ref().unwrap();
    let g: serde_json::Value = serde_json::from_str(&m["golden"]).unwrap();
    (t, g["cases"].as_array().unwrap().clone())
}

fn vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Normwise relative error `max|a-b| / max|b|` (absolute when b is all zeros).
fn err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let s = b.iter().map(|v| v.abs()).fold(0.0, f64::max);
    if s > 0.0 {
        d / s
    } else {
        d
    }
}

const TOL: f64 = 1e-10;

fn bn_names(op: &str, stride: usize) -> Vec<&'static str> {
    match op {
        "sep_conv_3x3" | "sep_conv_5x5" => vec!["op.3", "op.7"],
        "dil_conv_3x3" | "dil_conv_5x5" => vec!["op.3"],
        "skip_connect" if stride == 2 => vec!["bn"],
        "max_pool_3x3" | "avg_pool_3x3" => vec!["1"],
        _ => vec![],
    }
}

fn load_params(store: &ParamStore, g: &HashMap<String, Tensor>, case: &str, strip: &str) {
    for (name, var) in store.named() {
        let key = format!("{case}.w.{}", name.strip_prefix(strip).unwrap_or(name));
        let t = g.get(&key).unwrap_or_else(|| panic!("golden has no {key}"));
        var.set(t).unwrap();
    }
}

fn check_grads(
    store: &ParamStore,
    grads: &candle_core::backprop::GradStore,
    g: &HashMap<String, Tensor>,
    case: &str,
    strip: &str,
) -> usize {
    let mut n = 0;
    for (name, var) in store.named() {
        let key = format!("{case}.gw.{}", name.strip_prefix(strip).unwrap_or(name));
        let want = vec(&g[&key]);
        let got = vec(grads.get(var.as_tensor()).expect("gradient"));
        let e = err(&got, &want);
        assert!(e < TOL, "{key}: error {e:e}");
        n += 1;
    }
    n
}

#[test]
fn composite_ops_match_pytorch() {
    let (g, cases) = golden();
    let mut checked = 0;
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        if c["kind"] != "op" {
            continue;
        }
        let op_name = c["op"].as_str().unwrap();
        let ch = c["C"].as_u64().unwrap() as usize;
        let stride = c["stride"].as_u64().unwrap() as usize;
        let affine = c["affine"].as_bool().unwrap_or(false);
        let mut store = ParamStore::new(Device::Cpu, DType::F64, nas_core::component_rng(0, "t"));
        let op = Op::build(&mut store, "m", op_name, ch, stride, affine, false).unwrap();
        load_params(&store, &g, name, "m.");
        let x = Var::from_tensor(&g[&format!("{name}.x")]).unwrap();
        let y = match op.forward(x.as_tensor(), true) {
            Ok(y) => y,
            Err(e) => panic!("{name}: {e}"),
        };
        let ey = err(&vec(&y), &vec(&g[&format!("{name}.y")]));
        assert!(ey < TOL, "{name}.y: error {ey:e}");
        let loss = (&y * &g[&format!("{name}.gy")]).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        if !op.is_zero() {
            let gx = vec(grads.get(x.as_tensor()).expect("gx"));
            let e = err(&gx, &vec(&g[&format!("{name}.gx")]));
            assert!(e < TOL, "{name}.gx: error {e:e}");
        }
        check_grads(&store, &grads, &g, name, "m.");
        for (bn, bname) in op.batch_norms().iter().zip(bn_names(op_name, stride)) {
            let (m, v) = bn.running_stats();
            let em = err(&m, &vec(&g[&format!("{name}.{bname}.running_mean")]));
            let ev = err(&v, &vec(&g[&format!("{name}.{bname}.running_var")]));
            assert!(
                em < TOL && ev < TOL,
                "{name} {bname} running stats: {em:e} {ev:e}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} op cases found");
}

#[test]
fn mixed_op_matches_pytorch_including_alpha_gradient() {
    let (g, cases) = golden();
    let mut checked = 0;
    for c in cases.iter().filter(|c| c["kind"] == "mixed_op") {
        let name = c["name"].as_str().unwrap();
        let ch = c["C"].as_u64().unwrap() as usize;
        let stride = c["stride"].as_u64().unwrap() as usize;
        let mut store = ParamStore::new(Device::Cpu, DType::F64, nas_core::component_rng(0, "t"));
        let ops: Vec<Op> = PRIMITIVES
            .iter()
            .enumerate()
            .map(|(k, p)| {
                Op::build(&mut store, &k.to_string(), p, ch, stride, false, true).unwrap()
            })
            .collect();
        load_params(&store, &g, name, "");
        let alpha = vec(&g[&format!("{name}.alpha")]);
        let w = nas_core::math::softmax(&alpha);
        let wv = Var::from_vec(w.clone(), 8, &Device::Cpu).unwrap();
        let x = Var::from_tensor(&g[&format!("{name}.x")]).unwrap();
        let ys: Vec<Tensor> = ops
            .iter()
            .map(|o| o.forward(x.as_tensor(), true).unwrap())
            .collect();
        let y = nas_ops::weighted_sum(&ys, wv.as_tensor()).unwrap();
        let ey = err(&vec(&y), &vec(&g[&format!("{name}.y")]));
        assert!(ey < TOL, "{name}.y: {ey:e}");
        let loss = (&y * &g[&format!("{name}.gy")]).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let gx = vec(grads.get(x.as_tensor()).unwrap());
        assert!(err(&gx, &vec(&g[&format!("{name}.gx")])) < TOL, "{name}.gx");
        let gw = vec(grads.get(wv.as_tensor()).unwrap());
        let e = err(&gw, &vec(&g[&format!("{name}.gweights")]));
        assert!(e < TOL, "{name}.gweights: {e:e}");
        // The strategy's chain rule through the softmax gives PyTorch's dL/dalpha.
        let ga = nas_core::math::softmax_backward(&w, &gw);
        let e = err(&ga, &vec(&g[&format!("{name}.galpha")]));
        assert!(e < TOL, "{name}.galpha: {e:e}");
        assert_eq!(
            check_grads(&store, &grads, &g, name, ""),
            store.named().len()
        );
        for (k, op) in ops.iter().enumerate() {
            for (bn, bname) in op.batch_norms().iter().zip(bn_names(PRIMITIVES[k], stride)) {
                let (m, v) = bn.running_stats();
                let key = format!("{name}.{k}.{bname}");
                assert!(
                    err(&m, &vec(&g[&format!("{key}.running_mean")])) < TOL,
                    "{key} mean"
                );
                assert!(
                    err(&v, &vec(&g[&format!("{key}.running_var")])) < TOL,
                    "{key} var"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 2);
}
