//! A chain space described as plain data: its stem, its layers with the plan of every
//! option, its tail and classifier. [`crate::ChainSpace`] turns a [`ChainLayout`] into the
//! space's decisions and costs, its supernet and its standalone networks.
use candle_core::{Result as CResult, Tensor};
use nas_core::Result;
use nas_model::ParamStore;
use nas_ops::BatchNorm2d;

use crate::layers::split_even_odd;
use crate::seq::{Residual, Seq, Step};
use crate::{Candidate, CostSum, Shape};

/// How one option of a layer is built.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionPlan {
    /// A sequence of steps with an optional identity shortcut (MBConv, FBNet's IRF block,
    /// a 1x1 projection). No steps and no shortcut is the identity.
    Residual {
        /// The body.
        steps: Vec<Step>,
        /// Add the input to the body's output.
        shortcut: bool,
    },
    /// A ShuffleNetV2 unit (SPOS `Shufflenet` / `Shuffle_Xception`, Ma et al. 2018):
    /// with a projection branch, both branches see the whole input and are concatenated;
    /// without one, the input's even channels pass through and the odd channels go through
    /// `main`, and the two are concatenated.
    ShuffleUnit {
        /// The projection branch (first unit of a stage).
        proj: Option<Vec<Step>>,
        /// The main branch.
        main: Vec<Step>,
    },
}

impl OptionPlan {
    /// The identity.
    pub fn identity() -> Self {
        OptionPlan::Residual {
            steps: vec![],
            shortcut: false,
        }
    }

    /// Adds the option's cost on `input` to `sum`; returns its output shape.
    pub fn cost(&self, sum: &mut CostSum, input: Shape) -> Shape {
        match self {
            OptionPlan::Residual { steps, .. } => Seq::cost(sum, input, steps),
            OptionPlan::ShuffleUnit { proj, main } => match proj {
                Some(p) => {
                    let a = Seq::cost(sum, input, p);
                    let b = Seq::cost(sum, input, main);
                    Shape::new(a.c + b.c, b.h, b.w)
                }
                None => {
                    let half = Shape::new(input.c / 2, input.h, input.w);
                    let b = Seq::cost(sum, half, main);
                    Shape::new(half.c + b.c, b.h, b.w)
                }
            },
        }
    }

    /// Builds the option on `input`, parameters named under `prefix`.
    pub fn build(
        &self,
        store: &mut ParamStore,
        prefix: &str,
        input: Shape,
    ) -> Result<Box<dyn Candidate>> {
        Ok(match self {
            OptionPlan::Residual { steps, shortcut } => {
                Box::new(Residual::build(store, prefix, input, steps, *shortcut)?.0)
            }
            OptionPlan::ShuffleUnit { proj, main } => {
                let proj = match proj {
                    Some(p) => Some(Seq::build(store, &format!("{prefix}.proj"), input, p)?.0),
                    None => None,
                };
                let main_in = if proj.is_some() {
                    input
                } else {
                    Shape::new(input.c / 2, input.h, input.w)
                };
                let main = Seq::build(store, &format!("{prefix}.main"), main_in, main)?.0;
                Box::new(ShuffleUnit { proj, main })
            }
        })
    }
}

/// A built [`OptionPlan::ShuffleUnit`].
struct ShuffleUnit {
    proj: Option<Seq>,
    main: Seq,
}

impl Candidate for ShuffleUnit {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        match &self.proj {
            Some(p) => {
                let a = p.forward(x, train)?;
                let b = self.main.forward(x, train)?;
                Tensor::cat(&[&a, &b], 1)
            }
            None => {
                let (keep, go) = split_even_odd(x)?;
                let b = self.main.forward(&go, train)?;
                Tensor::cat(&[&keep, &b], 1)
            }
        }
    }
    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = self
            .proj
            .as_ref()
            .map(|p| p.batch_norms())
            .unwrap_or_default();
        v.extend(self.main.batch_norms());
        v
    }
}

/// One choice layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    /// Decision key (`stage2.block1`, ...).
    pub key: String,
    /// Group (the stage).
    pub group: String,
    /// Input shape of every option.
    pub input: Shape,
    /// The options: name and plan, in the space's fixed order.
    pub options: Vec<(String, OptionPlan)>,
}

/// A chain space as plain data (see the module documentation). Every option of a layer
/// must map the layer's input shape to one common output shape, which is the next layer's
/// input.
pub trait ChainLayout: Send + Sync + 'static {
    /// The registered space name.
    fn space(&self) -> &str;
    /// The input shape.
    fn input(&self) -> Shape;
    /// Classes of the classifier.
    fn num_classes(&self) -> usize;
    /// The fixed stem.
    fn stem(&self) -> Vec<Step>;
    /// The choice layers.
    fn layers(&self) -> &[LayerPlan];
    /// The fixed tail (before global average pooling).
    fn tail(&self) -> Vec<Step>;
    /// Whether the classifier has a bias.
    fn classifier_bias(&self) -> bool;
    /// Whether the supernet's batch norms are affine (standalone networks always are).
    /// Provided: `true` (ProxylessNAS and FBNet supernets); the SPOS layout overrides it.
    fn supernet_bn_affine(&self) -> bool {
        true
    }
}
