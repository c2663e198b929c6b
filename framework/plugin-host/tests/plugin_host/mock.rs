//! A mock environment: a trainer whose architecture gradient is that of a known quadratic,
//! an estimator over a fitness function, and simple space rules. Every trainer call is
//! recorded so that tests can see exactly what crossed the boundary.
use nas_core::{
    ArchGradient, Architecture, Cost, Decision, Drive, DriveKind, Estimator, EvalStats, GradOrder,
    MixingWeights, NasError, OptionSpec, Result, Score, SearchEnv, SpaceSpec, Split, StepStats,
    SupernetTrainer,
};

/// A space of `shape.len()` decisions with `shape[d]` options each.
pub fn spec(shape: &[usize]) -> SpaceSpec {
    SpaceSpec {
        space: "toy".into(),
        decisions: shape
            .iter()
            .enumerate()
            .map(|(i, &n)| Decision {
                key: format!("d{i}"),
                group: "g".into(),
                node: None,
                options: (0..n)
                    .map(|o| OptionSpec {
                        name: format!("op{o}"),
                        cost: Cost {
                            params: o as f64,
                            flops: 0.0,
                            latency_ms: None,
                        },
                    })
                    .collect(),
            })
            .collect(),
        fixed_cost: Cost::default(),
    }
}

/// One recorded trainer call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    BeginEpoch(usize),
    Train(Drive),
    Grad(Drive, GradOrder),
    Eval(Drive, Split, Option<usize>),
}

/// Which trainer method should fail, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    None,
    /// `train_weights` panics.
    PanicInTrain,
    /// `batch_size` (an infallible method) panics.
    PanicInBatchSize,
    /// `arch_gradient` returns `NonFinite`.
    NonFiniteGrad,
}

/// The trainer: `L(w) = 1/2 sum_k c_k (w_k - t_k)^2` over the flat mixing weights, so
/// `dL/dw_k = c_k (w_k - t_k)`.
pub struct QuadTrainer {
    pub spec: SpaceSpec,
    pub c: Vec<f32>,
    pub t: Vec<f32>,
    pub calls: Vec<Call>,
    pub fault: Fault,
}

impl QuadTrainer {
    pub fn new(spec: SpaceSpec, c: Vec<f32>, t: Vec<f32>) -> Self {
        QuadTrainer {
            spec,
            c,
            t,
            calls: Vec::new(),
            fault: Fault::None,
        }
    }

    /// Gradient and loss at `w`, computed the plain way.
    pub fn grad_at(&self, w: &[f32]) -> (Vec<f32>, f64) {
        let g = w
            .iter()
            .zip(&self.c)
            .zip(&self.t)
            .map(|((w, c), t)| c * (w - t))
            .collect();
        let loss = w
            .iter()
            .zip(&self.c)
            .zip(&self.t)
            .map(|((w, c), t)| 0.5 * *c as f64 * ((w - t) as f64).powi(2))
            .sum();
        (g, loss)
    }
}

fn weight_sum(d: &Drive) -> f64 {
    match &d.kind {
        DriveKind::Mixed { weights }
        | DriveKind::SelectedOnly { weights }
        | DriveKind::Gated { weights, .. } => weights.flatten().iter().map(|&v| v as f64).sum(),
        DriveKind::MixedPerSample { weights } | DriveKind::SelectedPerSample { weights } => weights
            .iter()
            .flat_map(|w| w.flatten())
            .map(|v| v as f64)
            .sum(),
        DriveKind::Paths { archs } => archs.iter().flat_map(|a| &a.choices).sum::<usize>() as f64,
    }
}

impl SupernetTrainer for QuadTrainer {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn steps_per_epoch(&self) -> usize {
        3
    }
    fn batch_size(&self) -> usize {
        if self.fault == Fault::PanicInBatchSize {
            panic!("mock trainer: batch_size exploded");
        }
        4
    }
    fn begin_epoch(&mut self, epoch: usize) -> Result<()> {
        self.calls.push(Call::BeginEpoch(epoch));
        Ok(())
    }
    fn weight_lr(&self) -> f64 {
        0.025
    }
    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats> {
        if self.fault == Fault::PanicInTrain {
            panic!("mock trainer: train_weights exploded");
        }
        self.calls.push(Call::Train(drive.clone()));
        Ok(StepStats {
            loss: 1.25,
            accuracy: 0.5,
            grad_norm: 2.0,
            lr: 0.025,
        })
    }
    fn arch_gradient(&mut self, drive: &Drive, order: GradOrder) -> Result<ArchGradient> {
        self.calls.push(Call::Grad(drive.clone(), order));
        if self.fault == Fault::NonFiniteGrad {
            return Err(NasError::NonFinite {
                quantity: "arch gradient".into(),
                epoch: 0,
                step: 7,
            });
        }
        let (g, loss) = match &drive.kind {
            DriveKind::Mixed { weights } => self.grad_at(&weights.flatten()),
            // Gates: the quadratic's gradient on the active options, zero elsewhere.
            DriveKind::Gated { weights, active } => {
                let (mut g, loss) = self.grad_at(&weights.flatten());
                let mut at = 0;
                for (row, set) in weights.0.iter().zip(active) {
                    for k in 0..row.len() {
                        if !set.contains(&k) {
                            g[at + k] = 0.0;
                        }
                    }
                    at += row.len();
                }
                (g, loss)
            }
            _ => {
                return Err(NasError::Strategy(
                    "mock trainer wants a mixed or gated drive".into(),
                ))
            }
        };
        Ok(ArchGradient {
            loss,
            accuracy: 0.75,
            grads: vec![MixingWeights::from_flat(&g, &self.spec.shape()).unwrap()],
            condition_grad: drive.condition.map(|c| c as f64 * 2.0),
        })
    }
    fn evaluate(
        &mut self,
        drive: &Drive,
        split: Split,
        max_batches: Option<usize>,
    ) -> Result<EvalStats> {
        self.calls
            .push(Call::Eval(drive.clone(), split, max_batches));
        Ok(EvalStats {
            loss: weight_sum(drive),
            accuracy: 0.5,
            samples: match &drive.kind {
                DriveKind::MixedPerSample { weights }
                | DriveKind::SelectedPerSample { weights } => weights.len(),
                _ => 1,
            },
        })
    }
}

/// An estimator over a fitness function of the choices; records every query.
pub struct FnEstimator {
    pub spec: SpaceSpec,
    pub fitness: fn(&[usize]) -> f64,
    pub queried: Vec<Vec<usize>>,
}

impl Estimator for FnEstimator {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        self.spec.check(arch)?;
        self.queried.push(arch.choices.clone());
        let fitness = (self.fitness)(&arch.choices);
        Ok(Score {
            fitness,
            report: [("test_acc".to_string(), fitness / 2.0)].into(),
            cost_seconds: 0.5,
        })
    }
    fn queries(&self) -> u64 {
        self.queried.len() as u64
    }
}

/// The environment: either part may be missing.
pub struct MockEnv {
    pub spec: SpaceSpec,
    pub trainer: Option<QuadTrainer>,
    pub estimator: Option<FnEstimator>,
    pub epoch: (usize, usize),
}

impl MockEnv {
    pub fn with_estimator(shape: &[usize], fitness: fn(&[usize]) -> f64) -> Self {
        let spec = spec(shape);
        MockEnv {
            estimator: Some(FnEstimator {
                spec: spec.clone(),
                fitness,
                queried: Vec::new(),
            }),
            spec,
            trainer: None,
            epoch: (0, 2),
        }
    }

    pub fn with_trainer(shape: &[usize], c: Vec<f32>, t: Vec<f32>) -> Self {
        let spec = spec(shape);
        MockEnv {
            trainer: Some(QuadTrainer::new(spec.clone(), c, t)),
            spec,
            estimator: None,
            epoch: (0, 2),
        }
    }

    pub fn trainer_calls(&self) -> &[Call] {
        &self.trainer.as_ref().unwrap().calls
    }
}

impl SearchEnv for MockEnv {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        self.trainer.as_mut().map(|t| t as &mut dyn SupernetTrainer)
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        self.estimator.as_mut().map(|e| e as &mut dyn Estimator)
    }
    /// Largest weight per decision (first on ties).
    fn derive(&self, weights: &MixingWeights, mode: &str) -> Result<Architecture> {
        if mode != "default" {
            return Err(NasError::Strategy(format!("unknown derive mode {mode}")));
        }
        weights.check_shape(&self.spec)?;
        let choices = weights
            .0
            .iter()
            .map(|w| {
                let mut best = 0;
                for (i, &v) in w.iter().enumerate() {
                    if v > w[best] {
                        best = i;
                    }
                }
                best
            })
            .collect();
        Ok(Architecture::new("toy", choices))
    }
    fn cost(&self, arch: &Architecture) -> Result<Cost> {
        self.spec.cost_of(arch)
    }
    fn describe(&self, arch: &Architecture) -> String {
        arch.choices
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("-")
    }
    fn epoch(&self) -> (usize, usize) {
        self.epoch
    }
}
