//! The ENAS LSTM controller (Pham et al., ICML 2018, section 2; melodyguan/enas
//! `micro_controller.py` and `common_ops.py`), its forward pass (sampling, or scoring a given
//! architecture) and its gradient, by candle's autograd inside this crate. No tensor leaves
//! the crate: the strategy sees choices, log-probabilities and flat `f64` gradients.
//!
//! One LSTM layer without biases (`lstm()` of `common_ops.py`: `[i, f, o, g] = [x, h] W`),
//! a learned start input `g_emb`, per head a softmax `h W_soft + b_soft` and an option
//! embedding `W_emb`, and for cell inputs the anchor attention
//! `v^T tanh(W_1 anchor_j + W_2 h)`. Logits are divided by the temperature, then squashed
//! by `c * tanh(.)` (`c` = `tanh_constant` for inputs, `tanh_constant / op_tanh_reduce` for
//! ops). Every parameter is drawn from `U(-0.1, 0.1)` (the reference's initializer); the bias
//! of the ENAS micro op head starts at `[10, 10, 0, 0, 0]` and the normal cell adds the fixed
//! `[0.25, 0.25, -0.25, -0.25, -0.25]` to its op logits (`b_soft`, `b_soft_no_learn`).
//!
//! Macro layers (`general_controller.py`, [`macro_layers`]) sample an op, then one skip bit
//! per earlier layer by attention over the layer anchors, and record the skip penalty (the
//! KL divergence of the skip probabilities from `skip_target`) on the graph.
mod macro_layers;
use candle_core::{DType, Device, Tensor, Var};
use nas_core::{NasError, Result, SpaceSpec};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::plan::{Block, Plan};

/// The op names of the ENAS micro space, in the reference's order (`micro_child.py`).
pub const ENAS_MICRO_OPS: [&str; 5] = [
    "sep_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "identity",
];

/// Initial bias of the ENAS micro op head (`b_init` of `micro_controller.py`).
const MICRO_B_INIT: [f64; 5] = [10.0, 10.0, 0.0, 0.0, 0.0];
/// Fixed bias added to the normal cell's op logits (`b_soft_no_learn`).
const MICRO_NORMAL_BIAS: [f64; 5] = [0.25, 0.25, -0.25, -0.25, -0.25];

/// The controller's shape and logit transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// LSTM hidden units.
    pub lstm_size: usize,
    /// `c` of `c * tanh(logits)` for input decisions; `None`: no squashing.
    pub tanh_constant: Option<f64>,
    /// Op decisions use `tanh_constant / op_tanh_reduce`.
    pub op_tanh_reduce: f64,
    /// Logits are divided by it before the squashing; `None`: not divided.
    pub temperature: Option<f64>,
    /// Half-width of the uniform initialisation.
    pub init_range: f64,
    /// The target skip probability of the macro skip penalty (reference `skip_target`).
    pub skip_target: f64,
}

fn terr(e: candle_core::Error) -> NasError {
    NasError::Strategy(format!("enas controller: {e}"))
}

const W_LSTM: usize = 0;
const G_EMB: usize = 1;
const W_ATTN_1: usize = 2;
const W_ATTN_2: usize = 3;
const V_ATTN: usize = 4;

/// Indices into the parameter list of one head.
#[derive(Debug, Clone, Copy)]
struct HeadVars {
    emb: usize,
    w: usize,
    b: usize,
    micro: bool,
}

/// A sampled (or scored) architecture with its log-probability still on the graph.
pub struct Rollout {
    /// One choice per decision, in the space's decision order.
    pub choices: Vec<usize>,
    /// `sum log p(choice)`, a scalar on the autograd graph.
    pub log_prob: Tensor,
    /// Sum over decisions of the entropy of each softmax (no gradient, as the reference's
    /// `tf.stop_gradient`).
    pub entropy: f64,
    /// Macro layers: the mean over layers with skip decisions of
    /// `sum KL(sigmoid(skip logits) || [1 - skip_target, skip_target])`, a scalar on the
    /// graph (`skip_penaltys` of `general_controller.py`); zero without macro layers.
    pub skip_penalty: Tensor,
    /// Macro layers: the number of skips chosen.
    pub skip_count: usize,
}

/// What the walk through the plan accumulates.
struct Acc {
    choices: Vec<usize>,
    log_prob: Tensor,
    entropy: f64,
    penalties: Vec<Tensor>,
    skip_count: usize,
}

impl Acc {
    fn add(&mut self, d: usize, k: usize, lp: Tensor, e: f64) -> candle_core::Result<()> {
        self.choices[d] = k;
        self.log_prob = (&self.log_prob + lp)?;
        self.entropy += e;
        Ok(())
    }
}

/// How the forward pass picks each choice.
enum Pick<'a> {
    Sample(&'a mut ChaCha8Rng),
    Forced(&'a [usize]),
}

/// The LSTM controller.
pub struct Controller {
    cfg: PolicyConfig,
    plan: Plan,
    vars: Vec<Var>,
    names: Vec<String>,
    heads: Vec<HeadVars>,
}

impl Controller {
    /// A controller for `spec` with weights drawn from `rng`.
    pub fn new(spec: &SpaceSpec, cfg: PolicyConfig, rng: &mut ChaCha8Rng) -> Result<Self> {
        let plan = Plan::new(spec)?;
        let h = cfg.lstm_size;
        let r = cfg.init_range;
        let mut vars = Vec::new();
        let mut names = Vec::new();
        let mut add = |name: String, shape: &[usize], vals: Option<Vec<f64>>| -> Result<usize> {
            let n: usize = shape.iter().product();
            let data = vals.unwrap_or_else(|| (0..n).map(|_| rng.random_range(-r..=r)).collect());
            let t = Tensor::from_vec(data, shape, &Device::Cpu).map_err(terr)?;
            vars.push(Var::from_tensor(&t).map_err(terr)?);
            names.push(name);
            Ok(vars.len() - 1)
        };
        add("lstm.w".into(), &[2 * h, 4 * h], None)?;
        add("g_emb".into(), &[1, h], None)?;
        add("attention.w_1".into(), &[h, h], None)?;
        add("attention.w_2".into(), &[h, h], None)?;
        add("attention.v".into(), &[h, 1], None)?;
        let mut heads = Vec::new();
        for (i, opts) in plan.heads.iter().enumerate() {
            let k = opts.len();
            let micro = opts.iter().map(String::as_str).eq(ENAS_MICRO_OPS);
            let emb = add(format!("head{i}.emb"), &[k, h], None)?;
            let w = add(format!("head{i}.w_soft"), &[h, k], None)?;
            let b_init = if micro {
                MICRO_B_INIT.to_vec()
            } else {
                vec![0.0; k]
            };
            let b = add(format!("head{i}.b_soft"), &[1, k], Some(b_init))?;
            heads.push(HeadVars { emb, w, b, micro });
        }
        Ok(Controller {
            cfg,
            plan,
            vars,
            names,
            heads,
        })
    }

    /// The sampling plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Parameter names, in the order of [`Controller::values`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every parameter as a flat buffer.
    pub fn values(&self) -> Result<Vec<Vec<f64>>> {
        self.vars
            .iter()
            .map(|v| {
                v.as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f64>())
                    .map_err(terr)
            })
            .collect()
    }

    /// Overwrites every parameter (the layout of [`Controller::values`]).
    pub fn set_values(&self, vals: &[Vec<f64>]) -> Result<()> {
        if vals.len() != self.vars.len() {
            return Err(NasError::Strategy(format!(
                "enas controller: {} buffers given, it has {} parameters",
                vals.len(),
                self.vars.len()
            )));
        }
        for (v, x) in self.vars.iter().zip(vals) {
            if x.len() != v.elem_count() {
                return Err(NasError::Strategy(format!(
                    "enas controller: a buffer of {} values for a parameter of {}",
                    x.len(),
                    v.elem_count()
                )));
            }
            let t = Tensor::from_vec(x.clone(), v.shape(), &Device::Cpu).map_err(terr)?;
            v.set(&t).map_err(terr)?;
        }
        Ok(())
    }

    /// Samples an architecture.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Result<Rollout> {
        self.run(Pick::Sample(rng)).map_err(terr)
    }

    /// Scores a given architecture (teacher forcing): its rollout with the log-probability.
    pub fn score(&self, choices: &[usize]) -> Result<Rollout> {
        if choices.len() != self.plan.decisions {
            return Err(NasError::Strategy(format!(
                "enas controller: {} choices for {} decisions",
                choices.len(),
                self.plan.decisions
            )));
        }
        self.run(Pick::Forced(choices)).map_err(terr)
    }

    /// `log p(choices)` as a number.
    pub fn log_prob(&self, choices: &[usize]) -> Result<f64> {
        let r = self.score(choices)?;
        r.log_prob.to_scalar::<f64>().map_err(terr)
    }

    /// Gradient of `scale * log p` of a rollout with respect to every parameter (flat, in
    /// the order of [`Controller::values`]). REINFORCE uses `scale = -(R - b)` for the loss
    /// `-(R - b) log p` that the reference minimises.
    pub fn grad(&self, rollout: &Rollout, scale: f64) -> Result<Vec<Vec<f64>>> {
        self.grad_loss(rollout, scale, 0.0)
    }

    /// Gradient of `scale * log p + skip_weight * skip_penalty` of a rollout (flat, in the
    /// order of [`Controller::values`]): the macro loss `-(R - b) log p + w KL` of
    /// `general_controller.py` with `scale = -(R - b)`.
    pub fn grad_loss(
        &self,
        rollout: &Rollout,
        scale: f64,
        skip_weight: f64,
    ) -> Result<Vec<Vec<f64>>> {
        let loss = rollout.log_prob.affine(scale, 0.0).map_err(terr)?;
        let loss = if skip_weight != 0.0 {
            (loss
                + rollout
                    .skip_penalty
                    .affine(skip_weight, 0.0)
                    .map_err(terr)?)
            .map_err(terr)?
        } else {
            loss
        };
        let g = loss.backward().map_err(terr)?;
        self.vars
            .iter()
            .map(|v| match g.get(v.as_tensor()) {
                Some(t) => t
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f64>())
                    .map_err(terr),
                None => Ok(vec![0.0; v.elem_count()]),
            })
            .collect()
    }

    fn t(&self, i: usize) -> &Tensor {
        self.vars[i].as_tensor()
    }

    fn lstm(&self, x: &Tensor, c: &Tensor, h: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let n = self.cfg.lstm_size;
        let ifog = Tensor::cat(&[x, h], 1)?.matmul(self.t(W_LSTM))?;
        let sig = |t: Tensor| -> candle_core::Result<Tensor> {
            t.neg()?.exp()?.affine(1.0, 1.0)?.recip()
        };
        let i = sig(ifog.narrow(1, 0, n)?)?;
        let f = sig(ifog.narrow(1, n, n)?)?;
        let o = sig(ifog.narrow(1, 2 * n, n)?)?;
        let g = ifog.narrow(1, 3 * n, n)?.tanh()?;
        let c2 = ((i * g)? + (f * c)?)?;
        let h2 = (o * c2.tanh()?)?;
        Ok((c2, h2))
    }

    fn squash(&self, logits: Tensor, c: Option<f64>) -> candle_core::Result<Tensor> {
        let mut l = logits;
        if let Some(t) = self.cfg.temperature {
            l = l.affine(1.0 / t, 0.0)?;
        }
        if let Some(c) = c {
            l = l.tanh()?.affine(c, 0.0)?;
        }
        Ok(l)
    }

    /// Log-softmax of `[1, K]` logits, the choice (sampled or forced), its log-probability
    /// tensor and the entropy.
    fn choose(
        logits: &Tensor,
        pick: &mut Pick,
        at: usize,
    ) -> candle_core::Result<(usize, Tensor, f64)> {
        let max = logits.max_keepdim(1)?.detach();
        let shifted = logits.broadcast_sub(&max)?;
        let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
        let logp = shifted.broadcast_sub(&lse)?;
        let lv: Vec<f64> = logp.flatten_all()?.to_vec1()?;
        let entropy = -lv.iter().map(|&l| l.exp() * l).sum::<f64>();
        let k = match pick {
            Pick::Forced(c) => c[at],
            Pick::Sample(rng) => {
                let u: f64 = rng.random();
                let mut acc = 0.0;
                let mut k = lv.len() - 1;
                for (j, &l) in lv.iter().enumerate() {
                    acc += l.exp();
                    if u < acc {
                        k = j;
                        break;
                    }
                }
                k
            }
        };
        if k >= lv.len() {
            candle_core::bail!(
                "choice {k} out of range for decision {at} ({} options)",
                lv.len()
            );
        }
        Ok((k, logp.narrow(1, k, 1)?.reshape(())?, entropy))
    }

    fn run(&self, mut pick: Pick) -> candle_core::Result<Rollout> {
        let n = self.cfg.lstm_size;
        let zeros = Tensor::zeros((1, n), DType::F64, &Device::Cpu)?;
        let (mut c, mut h) = (zeros.clone(), zeros.clone());
        let g_emb = self.t(G_EMB).clone();
        let mut input = g_emb.clone();
        let mut acc = Acc {
            choices: vec![0usize; self.plan.decisions],
            log_prob: Tensor::zeros((), DType::F64, &Device::Cpu)?,
            entropy: 0.0,
            penalties: Vec::new(),
            skip_count: 0,
        };
        let op_c = self.cfg.tanh_constant.map(|c| c / self.cfg.op_tanh_reduce);
        for block in &self.plan.blocks {
            match block {
                Block::Single { decision, head } => {
                    (c, h) = self.lstm(&input, &c, &h)?;
                    let hv = self.heads[*head];
                    let logits = h.matmul(self.t(hv.w))?.broadcast_add(self.t(hv.b))?;
                    let logits = self.squash(logits, op_c)?;
                    let (k, lp, e) = Self::choose(&logits, &mut pick, *decision)?;
                    acc.add(*decision, k, lp, e)?;
                    input = self.t(hv.emb).narrow(0, k, 1)?;
                }
                Block::Macro { layers } => {
                    (c, h) = self.macro_layers(layers, (c, h), &mut pick, &mut acc)?;
                    input = g_emb.clone();
                }
                Block::Cell { nodes, normal } => {
                    input = g_emb.clone();
                    let mut anchors: Vec<Tensor> = Vec::new();
                    let mut anchors_w1: Vec<Tensor> = Vec::new();
                    for _ in 0..2 {
                        (c, h) = self.lstm(&input, &c, &h)?;
                        anchors.push(zeros.clone());
                        anchors_w1.push(h.matmul(self.t(W_ATTN_1))?);
                    }
                    for node in nodes {
                        for &d in &node.inputs {
                            (c, h) = self.lstm(&input, &c, &h)?;
                            let m = anchors_w1.len();
                            let q = Tensor::cat(&anchors_w1, 0)?
                                .broadcast_add(&h.matmul(self.t(W_ATTN_2))?)?
                                .tanh()?
                                .matmul(self.t(V_ATTN))?
                                .reshape((1, m))?;
                            let logits = self.squash(q, self.cfg.tanh_constant)?;
                            let (k, lp, e) = Self::choose(&logits, &mut pick, d)?;
                            acc.add(d, k, lp, e)?;
                            input = anchors[k].clone();
                        }
                        for &(d, head) in &node.ops {
                            (c, h) = self.lstm(&input, &c, &h)?;
                            let hv = self.heads[head];
                            let logits = h.matmul(self.t(hv.w))?.broadcast_add(self.t(hv.b))?;
                            let mut logits = self.squash(logits, op_c)?;
                            if *normal && hv.micro {
                                let b =
                                    Tensor::from_slice(&MICRO_NORMAL_BIAS, (1, 5), &Device::Cpu)?;
                                logits = (logits + b)?;
                            }
                            let (k, lp, e) = Self::choose(&logits, &mut pick, d)?;
                            acc.add(d, k, lp, e)?;
                            input = self.t(hv.emb).narrow(0, k, 1)?;
                        }
                        (c, h) = self.lstm(&input, &c, &h)?;
                        anchors.push(h.clone());
                        anchors_w1.push(h.matmul(self.t(W_ATTN_1))?);
                        input = g_emb.clone();
                    }
                }
            }
        }
        let skip_penalty = if acc.penalties.is_empty() {
            Tensor::zeros((), DType::F64, &Device::Cpu)?
        } else {
            let k = acc.penalties.len() as f64;
            Tensor::stack(&acc.penalties, 0)?
                .sum_all()?
                .affine(1.0 / k, 0.0)?
        };
        Ok(Rollout {
            choices: acc.choices,
            log_prob: acc.log_prob,
            entropy: acc.entropy,
            skip_penalty,
            skip_count: acc.skip_count,
        })
    }
}
