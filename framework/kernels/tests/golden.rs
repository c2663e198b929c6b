//! The host build of the kernel bodies against PyTorch's float64 goldens
//! (`shared/data/golden`, see its README): every depthwise-conv, 1x1-conv, pooling and
//! batch-norm case, and the ReLUConvBN, SepConv and DilConv operations rebuilt from the
//! primitives exactly as quark0/darts `operations.py` builds them, forward and backward
//! (L = sum(y * gy)), in f64 (normwise 1e-10) and f32 (normwise 1e-5, the README's advice).
use std::collections::HashMap;

use nas_kernels::host::{self, BnForward, BnShape, Geom, HostFloat};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/golden/darts_ops.safetensors"
);

struct Golden {
    tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
    cases: Vec<serde_json::Value>,
}

impl Golden {
    fn load() -> Golden {
        let bytes = std::fs::read(GOLDEN).unwrap_or_else(|e| panic!("cannot read {GOLDEN}: {e}"));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("golden file parses");
        let tensors = st
            .names()
            .into_iter()
            .map(|name| {
                let v = st.tensor(name).unwrap();
                let data = v
                    .data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                (name.to_string(), (v.shape().to_vec(), data))
            })
            .collect();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let g: serde_json::Value =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["golden"]).unwrap();
        Golden {
            tensors,
            cases: g["cases"].as_array().unwrap().clone(),
        }
    }

    fn get(&self, name: &str) -> &(Vec<usize>, Vec<f64>) {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("golden tensor {name} missing"))
    }

    fn data<T: Float>(&self, name: &str) -> Vec<T> {
        self.get(name).1.iter().map(|&v| T::from_f64(v)).collect()
    }

    fn cases(&self, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        self.cases.iter().filter(|c| pred(c)).cloned().collect()
    }
}

trait Float: HostFloat + PartialEq + std::fmt::Debug {
    const TOL: f64;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Float for f64 {
    const TOL: f64 = 1e-10;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl Float for f32 {
    const TOL: f64 = 1e-5;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// `max|a - ref| <= tol * max|ref|` (the golden README's normwise check).
fn assert_close<T: Float>(what: &str, got: &[T], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-300);
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (a, b)| m.max((a.to_f64() - b).abs()));
    assert!(
        err <= T::TOL * scale,
        "{what}: normwise error {:.3e} > {:.0e}",
        err / scale,
        T::TOL
    );
}

fn usize_of(c: &serde_json::Value, k: &str) -> usize {
    c[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {c}")) as usize
}

/// One stage of a DARTS operation.
#[derive(Clone)]
enum Stage {
    Relu,
    /// A convolution with the golden weight `w.<name>`.
    Conv {
        name: String,
        g: Geom,
    },
    /// A ReLU and the convolution after it in one kernel (the device's fused input ReLU).
    ReluConv {
        name: String,
        g: Geom,
    },
    /// DARTS' `FactorizedReduce` before its batch norm (ReLU, the two stride-2 1x1
    /// convolutions `w.<a>`, `w.<b>`, their concatenation) in one kernel.
    FactorizedReduce {
        a: String,
        b: String,
        g: Geom,
    },
    /// A batch norm whose buffers are `<prefix>running_*` (and, affine, `w.<prefix>weight`).
    Bn {
        prefix: String,
        affine: bool,
    },
}

/// What a stage remembers for its backward.
enum Saved<T> {
    Relu(Vec<T>),
    Conv(Vec<T>),
    Bn(Vec<T>, BnForward<T>, BnShape),
}

/// Runs `stages` forward and backward on a golden case and checks every stored tensor.
fn check_sequence<T: Float>(gd: &Golden, case: &str, dims: [usize; 4], stages: &[Stage]) {
    let at = |s: &str| format!("{case}.{s}");
    let mut x: Vec<T> = gd.data(&at("x"));
    let mut shape = dims;
    let mut saved = Vec::new();
    for st in stages {
        match st {
            Stage::Relu => {
                let y = host::relu_fwd(&x).unwrap();
                saved.push(Saved::Relu(std::mem::replace(&mut x, y)));
            }
            Stage::Conv { name, g } | Stage::ReluConv { name, g } => {
                let w: Vec<T> = gd.data(&at(&format!("w.{name}")));
                let y = if matches!(st, Stage::ReluConv { .. }) {
                    host::relu_conv_fwd(&x, &w, g).unwrap()
                } else {
                    host::conv_fwd(&x, &w, g).unwrap()
                };
                shape = [shape[0], g.cout as usize, g.oh as usize, g.ow as usize];
                saved.push(Saved::Conv(std::mem::replace(&mut x, y)));
            }
            Stage::FactorizedReduce { a, b, g } => {
                let wa: Vec<T> = gd.data(&at(&format!("w.{a}")));
                let wb: Vec<T> = gd.data(&at(&format!("w.{b}")));
                let y = host::factorized_reduce_fwd(&x, &wa, &wb, g).unwrap();
                shape = [shape[0], g.cout as usize, g.oh as usize, g.ow as usize];
                saved.push(Saved::Conv(std::mem::replace(&mut x, y)));
            }
            Stage::Bn { prefix, affine } => {
                let s = BnShape {
                    n: shape[0],
                    c: shape[1],
                    hw: shape[2] * shape[3],
                };
                let (gamma, beta): (Vec<T>, Vec<T>) = if *affine {
                    (
                        gd.data(&at(&format!("w.{prefix}weight"))),
                        gd.data(&at(&format!("w.{prefix}bias"))),
                    )
                } else {
                    (vec![], vec![])
                };
                let mut rm = vec![T::from_f64(0.0); s.c];
                let mut rv = vec![T::from_f64(1.0); s.c];
                let aff = affine.then(|| (gamma.as_slice(), beta.as_slice()));
                let f = host::bn_fwd_train(
                    &x,
                    s,
                    aff,
                    T::from_f64(1e-5),
                    T::from_f64(0.1),
                    Some((&mut rm, &mut rv)),
                )
                .unwrap();
                assert_close(
                    &format!("{case} {prefix}running_mean"),
                    &rm,
                    &gd.get(&at(&format!("{prefix}running_mean"))).1,
                );
                assert_close(
                    &format!("{case} {prefix}running_var"),
                    &rv,
                    &gd.get(&at(&format!("{prefix}running_var"))).1,
                );
                let y = f.y.clone();
                saved.push(Saved::Bn(std::mem::replace(&mut x, y), f, s));
            }
        }
    }
    assert_close(&format!("{case} y"), &x, &gd.get(&at("y")).1);
    let mut g: Vec<T> = gd.data(&at("gy"));
    for (st, sv) in stages.iter().zip(saved).rev() {
        g = match (st, sv) {
            (Stage::Relu, Saved::Relu(input)) => host::relu_bwd(&input, &g).unwrap(),
            (Stage::Conv { name, g: geom }, Saved::Conv(input))
            | (Stage::ReluConv { name, g: geom }, Saved::Conv(input)) => {
                let w: Vec<T> = gd.data(&at(&format!("w.{name}")));
                let (gx, gw) = if matches!(st, Stage::ReluConv { .. }) {
                    host::relu_conv_bwd(&input, &w, &g, geom).unwrap()
                } else {
                    host::conv_bwd(&input, &w, &g, geom).unwrap()
                };
                assert_close(
                    &format!("{case} gw.{name}"),
                    &gw,
                    &gd.get(&at(&format!("gw.{name}"))).1,
                );
                gx
            }
            (Stage::FactorizedReduce { a, b, g: geom }, Saved::Conv(input)) => {
                let wa: Vec<T> = gd.data(&at(&format!("w.{a}")));
                let wb: Vec<T> = gd.data(&at(&format!("w.{b}")));
                let (gx, gw) = host::factorized_reduce_bwd(&input, &wa, &wb, &g, geom).unwrap();
                let (ga, gb) = gw.split_at(wa.len());
                for (name, got) in [(a, ga), (b, gb)] {
                    let want = &gd.get(&at(&format!("gw.{name}"))).1;
                    assert_close(&format!("{case} gw.{name}"), got, want);
                }
                gx
            }
            (Stage::Bn { prefix, affine }, Saved::Bn(input, f, s)) => {
                let gamma: Option<Vec<T>> =
                    affine.then(|| gd.data(&at(&format!("w.{prefix}weight"))));
                let (gx, gp) = host::bn_bwd_train(&input, &g, s, gamma.as_deref(), &f).unwrap();
                if let Some((gg, gb)) = gp {
                    assert_close(
                        &format!("{case} gw.{prefix}weight"),
                        &gg,
                        &gd.get(&at(&format!("gw.{prefix}weight"))).1,
                    );
                    assert_close(
                        &format!("{case} gw.{prefix}bias"),
                        &gb,
                        &gd.get(&at(&format!("gw.{prefix}bias"))).1,
                    );
                }
                gx
            }
            _ => unreachable!("stage and saved state out of step"),
        };
    }
    assert_close(&format!("{case} gx"), &g, &gd.get(&at("gx")).1);
}

fn dims_of(gd: &Golden, case: &str) -> [usize; 4] {
    let s = &gd.get(&format!("{case}.x")).0;
    [s[0], s[1], s[2], s[3]]
}

fn for_both(f: impl Fn(&Golden, bool)) {
    let gd = Golden::load();
    f(&gd, true);
    f(&gd, false);
}

fn run<T: Float>(gd: &Golden, case: &str, stages: &[Stage]) {
    check_sequence::<T>(gd, case, dims_of(gd, case), stages);
}

/// Runs `stages` as given and, when a ReLU precedes a convolution, once more with the two
/// fused ([`Stage::ReluConv`], what the device launches).
fn run_any(gd: &Golden, f64_: bool, case: &str, stages: &[Stage]) {
    let fused = fuse_relus(stages);
    let variants: &[&[Stage]] = if fused.len() < stages.len() {
        &[stages, &fused]
    } else {
        &[stages]
    };
    for s in variants {
        if f64_ {
            run::<f64>(gd, case, s)
        } else {
            run::<f32>(gd, case, s)
        }
    }
}

/// `stages` with every ReLU that precedes a convolution folded into it.
fn fuse_relus(stages: &[Stage]) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::with_capacity(stages.len());
    for st in stages {
        match (out.last(), st) {
            (Some(Stage::Relu), Stage::Conv { name, g }) => {
                out.pop();
                out.push(Stage::ReluConv {
                    name: name.clone(),
                    g: *g,
                });
            }
            _ => out.push(st.clone()),
        }
    }
    out
}

#[test]
fn depthwise_convolutions() {
    for_both(|gd, f| {
        let cases = gd.cases(|c| c["kind"] == "dwconv");
        assert_eq!(cases.len(), 12);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let [n, ch, h, w] = dims_of(gd, name);
            let g = Geom::conv(
                n,
                ch,
                h,
                w,
                ch,
                usize_of(&c, "kernel"),
                usize_of(&c, "stride"),
                usize_of(&c, "padding"),
                usize_of(&c, "dilation"),
                ch,
            )
            .unwrap();
            run_any(
                gd,
                f,
                name,
                &[Stage::Conv {
                    name: "weight".into(),
                    g,
                }],
            );
        }
    });
}

#[test]
fn pointwise_convolutions() {
    for_both(|gd, f| {
        let cases = gd.cases(|c| c["kind"] == "conv1x1");
        assert_eq!(cases.len(), 3);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let [n, ch, h, w] = dims_of(gd, name);
            let cout = gd.get(&format!("{name}.w.weight")).0[0];
            let g = Geom::conv(n, ch, h, w, cout, 1, usize_of(&c, "stride"), 0, 1, 1).unwrap();
            run_any(
                gd,
                f,
                name,
                &[Stage::Conv {
                    name: "weight".into(),
                    g,
                }],
            );
        }
    });
}

#[test]
fn batch_norms() {
    for_both(|gd, f| {
        for c in gd.cases(|c| c["kind"] == "bn") {
            let name = c["name"].as_str().unwrap();
            let affine = c["affine"].as_bool().unwrap();
            run_any(
                gd,
                f,
                name,
                &[Stage::Bn {
                    prefix: String::new(),
                    affine,
                }],
            );
        }
    });
}

#[test]
fn relu_conv_bn() {
    for_both(|gd, f| {
        let name = "relu_conv_bn_h8";
        let [n, ch, h, w] = dims_of(gd, name);
        let g = Geom::conv(n, ch, h, w, 4, 1, 1, 0, 1, 1).unwrap();
        run_any(
            gd,
            f,
            name,
            &[
                Stage::Relu,
                Stage::Conv {
                    name: "op.1.weight".into(),
                    g,
                },
                Stage::Bn {
                    prefix: "op.2.".into(),
                    affine: false,
                },
            ],
        );
    });
}

/// `FactorizedReduce` (the stride-2 `skip_connect`) in one kernel and its batch norm, as
/// quark0/darts builds them: forward, running statistics, both weights' and the input's
/// gradients.
#[test]
fn factorized_reduce() {
    for_both(|gd, f| {
        let name = "skip_connect_s2_h8";
        let [n, ch, h, w] = dims_of(gd, name);
        let g = Geom::factorized_reduce(n, ch, h, w, 4).unwrap();
        run_any(
            gd,
            f,
            name,
            &[
                Stage::FactorizedReduce {
                    a: "conv_1.weight".into(),
                    b: "conv_2.weight".into(),
                    g,
                },
                Stage::Bn {
                    prefix: "bn.".into(),
                    affine: false,
                },
            ],
        );
    });
}

/// What the reference cannot run (an odd input size, an odd channel count) is a geometry
/// error, and a weight of the wrong length a length error, never a call into C.
#[test]
fn factorized_reduce_refuses_what_the_reference_cannot_run() {
    assert!(Geom::factorized_reduce(2, 4, 7, 8, 4).is_err());
    assert!(Geom::factorized_reduce(2, 4, 8, 8, 3).is_err());
    let g = Geom::factorized_reduce(2, 4, 8, 8, 4).unwrap();
    assert_eq!((g.oh, g.ow), (4, 4));
    let x = vec![0.5f64; 2 * 4 * 8 * 8];
    let err = host::factorized_reduce_fwd(&x, &[0.0; 8], &[0.0; 7], &g).unwrap_err();
    assert!(err.to_string().contains("`wb`"), "{err}");
}

/// SepConv and DilConv as quark0/darts builds them.
#[test]
fn sep_and_dil_convs() {
    for_both(|gd, f| {
        let cases = gd.cases(|c| {
            let op = c["op"].as_str().unwrap_or("");
            op.starts_with("sep_conv") || op.starts_with("dil_conv")
        });
        assert_eq!(cases.len(), 16);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let op = c["op"].as_str().unwrap();
            let affine = c["affine"].as_bool().unwrap();
            let stride = usize_of(&c, "stride");
            let k: usize = op[op.len() - 1..].parse().unwrap();
            let [n, ch, h, w] = dims_of(gd, name);
            let dw = |h, w, s, p, d| Geom::conv(n, ch, h, w, ch, k, s, p, d, ch).unwrap();
            let pw = |h, w| Geom::conv(n, ch, h, w, ch, 1, 1, 0, 1, 1).unwrap();
            let conv = |i: usize, g| Stage::Conv {
                name: format!("op.{i}.weight"),
                g,
            };
            let bn = |i: usize| Stage::Bn {
                prefix: format!("op.{i}."),
                affine,
            };
            let stages = if op.starts_with("sep_conv") {
                let g1 = dw(h, w, stride, k / 2, 1);
                let (oh, ow) = (g1.oh as usize, g1.ow as usize);
                vec![
                    Stage::Relu,
                    conv(1, g1),
                    conv(2, pw(oh, ow)),
                    bn(3),
                    Stage::Relu,
                    conv(5, dw(oh, ow, 1, k / 2, 1)),
                    conv(6, pw(oh, ow)),
                    bn(7),
                ]
            } else {
                let g1 = dw(h, w, stride, k - 1, 2);
                let (oh, ow) = (g1.oh as usize, g1.ow as usize);
                vec![Stage::Relu, conv(1, g1), conv(2, pw(oh, ow)), bn(3)]
            };
            run_any(gd, f, name, &stages);
        }
    });
}

/// Pools: forward and backward checked directly (they have no parameters).
#[test]
fn pools() {
    fn check<T: Float>(gd: &Golden, name: &str, op: &str, stride: usize) {
        let [n, ch, h, w] = dims_of(gd, name);
        let g = Geom::pool(n, ch, h, w, 3, stride, 1).unwrap();
        let x: Vec<T> = gd.data(&format!("{name}.x"));
        let gy: Vec<T> = gd.data(&format!("{name}.gy"));
        let (y, gx) = if op == "max_pool_3x3" {
            let (y, arg) = host::max_pool_fwd(&x, &g).unwrap();
            (y, host::max_pool_bwd(&gy, &arg, &g).unwrap())
        } else {
            (
                host::avg_pool_fwd(&x, &g, false).unwrap(),
                host::avg_pool_bwd(&gy, &g, false).unwrap(),
            )
        };
        assert_close(&format!("{name} y"), &y, &gd.get(&format!("{name}.y")).1);
        assert_close(&format!("{name} gx"), &gx, &gd.get(&format!("{name}.gx")).1);
    }
    for_both(|gd, f| {
        let cases = gd.cases(|c| c["op"] == "max_pool_3x3" || c["op"] == "avg_pool_3x3");
        assert_eq!(cases.len(), 6);
        for c in cases {
            let (name, op) = (c["name"].as_str().unwrap(), c["op"].as_str().unwrap());
            let s = usize_of(&c, "stride");
            if f {
                check::<f64>(gd, name, op, s)
            } else {
                check::<f32>(gd, name, op, s)
            }
        }
    });
}
