//! Scoring paths with a trained supernet (the `supernet` estimator of this crate), and
//! the environment in which a search strategy runs over it.
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use nas_core::{
    Architecture, Cost, Drive, Estimator, MixingWeights, NasError, Result, Score, SearchEnv,
    SpaceSpec, Split, SupernetTrainer,
};
use nas_strategy_discrete::Evaluated;

use crate::Constraint;

/// Fitness given to an architecture outside the constraint (accuracies are in `[0, 100]`,
/// so it never wins against a feasible one). It is not evaluated on the supernet.
pub const INFEASIBLE_FITNESS: f64 = -1.0;

/// Scores `arch` with the supernet's weights: the trainer evaluates the single path on
/// the first `batches` validation batches, after recalibrating its batch-norm statistics
/// on training batches when it is configured to (SPOS, Guo et al. 2020, section 3.3:
/// "we recalculate the statistics of all the Batch Normalization operations on a random
/// subset of training data"). Fitness: validation accuracy in percent.
pub fn score_path(
    trainer: &mut dyn SupernetTrainer,
    arch: &Architecture,
    batches: usize,
    cost: &Cost,
) -> Result<Score> {
    let t = Instant::now();
    let st = trainer.evaluate(
        &Drive::path(arch.clone()),
        Split::Valid,
        Some(batches.max(1)),
    )?;
    let mut report = BTreeMap::new();
    report.insert("valid_loss".into(), st.loss);
    report.insert("params".into(), cost.params);
    report.insert("flops".into(), cost.flops);
    if let Some(l) = cost.latency_ms {
        report.insert("latency_ms".into(), l);
    }
    report.insert("feasible".into(), 1.0);
    Ok(Score {
        fitness: 100.0 * st.accuracy,
        report,
        cost_seconds: t.elapsed().as_secs_f64(),
    })
}

/// How [`SupernetEstimator`] gets an architecture's cost.
pub type CostFn<'a> = Box<dyn Fn(&Architecture) -> Result<Cost> + 'a>;

/// The `supernet` estimator over a trainer: [`score_path`] on `batches` validation
/// batches, with infeasible architectures (outside `constraint`) scored
/// [`INFEASIBLE_FITNESS`] without evaluation. `cost` gives an architecture's cost.
pub struct SupernetEstimator<'a> {
    trainer: &'a mut dyn SupernetTrainer,
    cost: CostFn<'a>,
    batches: usize,
    constraint: Constraint,
    queries: u64,
}

impl<'a> SupernetEstimator<'a> {
    /// A new estimator.
    pub fn new(
        trainer: &'a mut dyn SupernetTrainer,
        cost: CostFn<'a>,
        batches: usize,
        constraint: Constraint,
    ) -> Self {
        SupernetEstimator {
            trainer,
            cost,
            batches,
            constraint,
            queries: 0,
        }
    }
}

fn infeasible(cost: &Cost) -> Score {
    let mut report = BTreeMap::new();
    report.insert("params".into(), cost.params);
    report.insert("flops".into(), cost.flops);
    report.insert("feasible".into(), 0.0);
    Score {
        fitness: INFEASIBLE_FITNESS,
        report,
        cost_seconds: 0.0,
    }
}

impl Estimator for SupernetEstimator<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.trainer.spec()
    }
    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        self.queries += 1;
        let cost = (self.cost)(arch)?;
        if !self.constraint.admits(&cost)? {
            return Ok(infeasible(&cost));
        }
        score_path(self.trainer, arch, self.batches, &cost)
    }
    fn queries(&self) -> u64 {
        self.queries
    }
}

/// The environment of a search that runs inside a supernet strategy after training: the
/// outer environment's space and costs, no trainer, and itself as the estimator (the
/// supernet estimator above, with a memo so that a path is evaluated once). It records
/// every architecture it scores.
pub struct SearchOver<'a> {
    outer: &'a mut dyn SearchEnv,
    batches: usize,
    constraint: Constraint,
    queries: u64,
    memo: HashMap<Vec<usize>, Score>,
    order: Vec<Architecture>,
}

impl<'a> SearchOver<'a> {
    /// A search environment over `outer` (which must have a trainer).
    pub fn new(outer: &'a mut dyn SearchEnv, batches: usize, constraint: Constraint) -> Self {
        SearchOver {
            outer,
            batches,
            constraint,
            queries: 0,
            memo: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Every distinct architecture scored, best first (ties: the first scored first);
    /// infeasible ones left out.
    pub fn ranked(&self) -> Vec<Evaluated> {
        let mut v: Vec<Evaluated> = self
            .order
            .iter()
            .filter_map(|a| {
                let s = &self.memo[&a.choices];
                (s.fitness > INFEASIBLE_FITNESS).then(|| Evaluated {
                    arch: a.clone(),
                    fitness: s.fitness,
                    report: s.report.clone(),
                })
            })
            .collect();
        v.sort_by(|a, b| b.fitness.total_cmp(&a.fitness));
        v
    }

    /// Distinct architectures evaluated on the supernet.
    pub fn evaluated(&self) -> usize {
        self.memo
            .values()
            .filter(|s| s.fitness > INFEASIBLE_FITNESS)
            .count()
    }
}

impl SearchEnv for SearchOver<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.outer.spec()
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        None
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        Some(self)
    }
    fn derive(&self, weights: &MixingWeights, mode: &str) -> Result<Architecture> {
        self.outer.derive(weights, mode)
    }
    fn cost(&self, arch: &Architecture) -> Result<Cost> {
        self.outer.cost(arch)
    }
    fn describe(&self, arch: &Architecture) -> String {
        self.outer.describe(arch)
    }
    fn epoch(&self) -> (usize, usize) {
        (0, 1)
    }
}

impl Estimator for SearchOver<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.outer.spec()
    }
    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        self.queries += 1;
        if let Some(s) = self.memo.get(&arch.choices) {
            return Ok(s.clone());
        }
        let cost = self.outer.cost(arch)?;
        let score = if self.constraint.admits(&cost)? {
            let batches = self.batches;
            let trainer = self.outer.trainer().ok_or_else(|| {
                NasError::Strategy("searching over a supernet needs the run's trainer".into())
            })?;
            score_path(trainer, arch, batches, &cost)?
        } else {
            infeasible(&cost)
        };
        self.memo.insert(arch.choices.clone(), score.clone());
        self.order.push(arch.clone());
        Ok(score)
    }
    fn queries(&self) -> u64 {
        self.queries
    }
}
