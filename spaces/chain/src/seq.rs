//! Blocks written once as a list of steps, from which both the layers and their cost are
//! derived, so that a block's parameter and MAC counts cannot drift from what is built.
use candle_core::{Result as CResult, Tensor};
use nas_core::Result;
use nas_model::ParamStore;
use nas_ops::BatchNorm2d;

use crate::layers::channel_shuffle;
use crate::{Act, Candidate, ConvBn, CostSum, Shape};

/// One step of a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// A [`ConvBn`] unit to `c_out` channels (`groups == usize::MAX` means depthwise).
    Conv {
        /// Output channels.
        c_out: usize,
        /// Kernel size.
        k: usize,
        /// Stride.
        stride: usize,
        /// Groups; [`DEPTHWISE`] for one group per channel.
        groups: usize,
        /// Activation after the batch norm.
        act: Act,
    },
    /// A channel shuffle with this many groups (a reshape, no cost).
    Shuffle(usize),
}

/// `groups` value of a depthwise step.
pub const DEPTHWISE: usize = usize::MAX;

impl Step {
    /// A dense 1x1 step.
    pub fn pw(c_out: usize, act: Act) -> Step {
        Step::Conv {
            c_out,
            k: 1,
            stride: 1,
            groups: 1,
            act,
        }
    }
    /// A grouped 1x1 step.
    pub fn gpw(c_out: usize, groups: usize, act: Act) -> Step {
        Step::Conv {
            c_out,
            k: 1,
            stride: 1,
            groups,
            act,
        }
    }
    /// A depthwise `k x k` step on `c` channels.
    pub fn dw(c: usize, k: usize, stride: usize, act: Act) -> Step {
        Step::Conv {
            c_out: c,
            k,
            stride,
            groups: DEPTHWISE,
            act,
        }
    }
    /// A dense `k x k` step.
    pub fn conv(c_out: usize, k: usize, stride: usize, act: Act) -> Step {
        Step::Conv {
            c_out,
            k,
            stride,
            groups: 1,
            act,
        }
    }
}

enum Built {
    Conv(ConvBn),
    Shuffle(usize),
}

/// A built sequence of steps.
pub struct Seq {
    steps: Vec<Built>,
}

impl Seq {
    /// Adds the cost of `steps` applied to `input` to `sum`; returns the output shape.
    pub fn cost(sum: &mut CostSum, input: Shape, steps: &[Step]) -> Shape {
        let mut s = input;
        for st in steps {
            if let Step::Conv {
                c_out,
                k,
                stride,
                groups,
                ..
            } = *st
            {
                let g = if groups == DEPTHWISE { s.c } else { groups };
                s = ConvBn::cost(sum, s, c_out, k, stride, g);
            }
        }
        s
    }

    /// Builds `steps` on `input`; the `i`-th convolution's parameters are named
    /// `{prefix}.{i}.conv.weight`, `{prefix}.{i}.bn.*`.
    pub fn build(
        store: &mut ParamStore,
        prefix: &str,
        input: Shape,
        steps: &[Step],
    ) -> Result<(Seq, Shape)> {
        let mut s = input;
        let mut out = Vec::with_capacity(steps.len());
        for (i, st) in steps.iter().enumerate() {
            match *st {
                Step::Conv {
                    c_out,
                    k,
                    stride,
                    groups,
                    act,
                } => {
                    let g = if groups == DEPTHWISE { s.c } else { groups };
                    let name = format!("{prefix}.{i}");
                    out.push(Built::Conv(ConvBn::new(
                        store, &name, s.c, c_out, k, stride, g, act,
                    )?));
                    s = s.conv(c_out, k, stride);
                }
                Step::Shuffle(g) => out.push(Built::Shuffle(g)),
            }
        }
        Ok((Seq { steps: out }, s))
    }

    /// Runs the steps.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let mut y = x.clone();
        for st in &self.steps {
            y = match st {
                Built::Conv(c) => c.forward(&y, train)?,
                Built::Shuffle(g) => channel_shuffle(&y, *g)?,
            };
        }
        Ok(y)
    }

    /// The batch norms, in order.
    pub fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Built::Conv(c) => Some(c.batch_norm()),
                Built::Shuffle(_) => None,
            })
            .collect()
    }
}

/// A sequence of steps with an optional identity shortcut (`y = body(x) + x`): the
/// inverted-residual blocks of ProxylessNAS and FBNet, and plain stems and tails.
pub struct Residual {
    body: Seq,
    shortcut: bool,
}

impl Residual {
    /// Builds the block; `shortcut` requires the body to keep the input shape.
    pub fn build(
        store: &mut ParamStore,
        prefix: &str,
        input: Shape,
        steps: &[Step],
        shortcut: bool,
    ) -> Result<(Residual, Shape)> {
        let (body, out) = Seq::build(store, prefix, input, steps)?;
        if shortcut && out != input {
            return Err(nas_core::NasError::Other(format!(
                "{prefix}: an identity shortcut needs equal shapes, {input:?} -> {out:?}"
            )));
        }
        Ok((Residual { body, shortcut }, out))
    }
}

impl Candidate for Residual {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let y = self.body.forward(x, train)?;
        if self.shortcut {
            y + x
        } else {
            Ok(y)
        }
    }
    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        self.body.batch_norms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn built_parameters_equal_the_step_cost_and_shapes_agree() {
        let steps = [
            Step::gpw(12, 2, Act::Relu),
            Step::Shuffle(2),
            Step::dw(12, 5, 2, Act::Relu),
            Step::gpw(6, 2, Act::None),
        ];
        let input = Shape::new(4, 9, 9);
        let mut store = ParamStore::new(Device::Cpu, DType::F32, nas_core::component_rng(0, "seq"));
        let (seq, out) = Seq::build(&mut store, "b", input, &steps).unwrap();
        let mut sum = CostSum::default();
        assert_eq!(Seq::cost(&mut sum, input, &steps), out);
        assert_eq!(sum.params, store.count());
        // By hand: 4/2*12 + 24 BN, 12*25 + 24 BN, 12/2*6 + 12 BN.
        assert_eq!(sum.params, 24 + 24 + 300 + 24 + 36 + 12);
        // MACs: 24*81 + 300*25 + 36*25.
        assert_eq!(sum.macs, 24 * 81 + 300 * 25 + 36 * 25);
        let x = Tensor::ones((2, 4, 9, 9), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(seq.forward(&x, true).unwrap().dims(), &[2, 6, 5, 5]);
        assert_eq!(seq.batch_norms().len(), 3);
    }

    #[test]
    fn shortcut_adds_the_input() {
        let mut store = ParamStore::new(Device::Cpu, DType::F32, nas_core::component_rng(0, "res"));
        let input = Shape::new(3, 4, 4);
        let steps = [Step::pw(3, Act::None)];
        let (r, _) = Residual::build(&mut store, "r", input, &steps, true).unwrap();
        // Zero the batch-norm scale so the body is exactly zero: output == input.
        store
            .get("r.0.bn.weight")
            .unwrap()
            .set(&Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 4), &Device::Cpu).unwrap();
        let y = r.forward(&x, false).unwrap();
        let diff = (y - &x).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        assert!(
            Residual::build(&mut store, "bad", input, &[Step::pw(4, Act::None)], true).is_err()
        );
    }
}
