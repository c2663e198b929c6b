//! Random search: uniform random architectures, keep the best by fitness.
//!
//! Source: the NB201 paper's "RS" baseline (Dong & Yang, ICLR 2020, section 5; reference
//! `exps/NAS-Bench-201-algos/RANDOM.py` in AutoDL-Projects, 12,000 s budget): sample cells uniformly,
//! score each by its 12-epoch validation accuracy, return the best.
use nas_core::params::ensure;
use nas_core::{
    ComponentInfo, ComponentKind, EpochReport, MixingWeights, Needs, ParamDoc, Result, SearchEnv,
    SearchOutcome, SearchStrategy, SpaceSpec, StepReport,
};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::common::{
    check_env, check_spec, decode_state, encode_state, not_initialised, CommonState, RngState,
    Tracker,
};
use crate::ops::random_architecture;

/// Registered name.
pub const NAME: &str = "random";

/// Parameters of random search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomParams {
    /// Query budget: architectures scored (the project's NB201 protocol: 100).
    pub queries: u64,
}

impl Default for RandomParams {
    fn default() -> Self {
        RandomParams { queries: 100 }
    }
}

impl RandomParams {
    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        ensure(
            self.queries >= 1,
            "strategy random",
            "queries",
            "must be >= 1",
        )
    }
}

/// Registry information.
pub fn info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Strategy,
        name: NAME.into(),
        summary: "random search: uniform random architectures, best by fitness (NB201's RS)".into(),
        defaults: serde_json::to_value(RandomParams::default()).unwrap_or_default(),
        params: vec![ParamDoc::new(
            "queries",
            "query budget (architectures scored)",
        )],
        origin: "built-in".into(),
    }
}

struct Run {
    spec: SpaceSpec,
    rng: ChaCha8Rng,
    tracker: Tracker,
}

/// Random search. One step = one query.
pub struct RandomSearch {
    params: RandomParams,
    run: Option<Run>,
}

#[derive(Serialize, Deserialize)]
struct State {
    common: CommonState,
    params: RandomParams,
}

impl RandomSearch {
    /// A new random search (checks `params`).
    pub fn new(params: RandomParams) -> Result<Self> {
        params.check()?;
        Ok(RandomSearch { params, run: None })
    }

    /// Queries and best so far (`None` before `init`).
    pub fn tracker(&self) -> Option<&Tracker> {
        self.run.as_ref().map(|r| &r.tracker)
    }
}

impl SearchStrategy for RandomSearch {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Estimator
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        check_spec(NAME, spec)?;
        self.run = Some(Run {
            spec: spec.clone(),
            rng: nas_core::component_rng(seed, NAME),
            tracker: Tracker::default(),
        });
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let budget = self.params.queries;
        let run = self.run.as_mut().ok_or_else(|| not_initialised(NAME))?;
        check_env(NAME, &run.spec, env)?;
        if run.tracker.queries >= budget {
            return Ok(StepReport {
                metrics: run.tracker.metrics(),
                finished: true,
            });
        }
        let arch = random_architecture(&run.spec, &mut run.rng);
        let ev = run.tracker.evaluate(NAME, env, arch)?;
        Ok(StepReport {
            metrics: run.tracker.step_metrics(&ev),
            finished: run.tracker.queries >= budget,
        })
    }

    fn end_epoch(&mut self, _env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let run = self.run.as_ref().ok_or_else(|| not_initialised(NAME))?;
        Ok(run.tracker.epoch_report())
    }

    fn outcome(&mut self, _env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let run = self.run.as_ref().ok_or_else(|| not_initialised(NAME))?;
        run.tracker.outcome(NAME)
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        None
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        let run = self.run.as_ref().ok_or_else(|| not_initialised(NAME))?;
        encode_state(
            NAME,
            &State {
                common: CommonState {
                    strategy: NAME.into(),
                    space: run.spec.space.clone(),
                    shape: run.spec.shape(),
                    rng: RngState::of(&run.rng),
                    tracker: run.tracker.clone(),
                },
                params: self.params.clone(),
            },
        )
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let run = self.run.as_mut().ok_or_else(|| not_initialised(NAME))?;
        let s: State = decode_state(NAME, state)?;
        s.common.check(NAME, &run.spec)?;
        // Only the budget may differ (a resumed run may be given more queries).
        run.rng = s.common.rng.restore()?;
        run.tracker = s.common.tracker;
        Ok(())
    }
}
