//! The whole boundary without a dynamic library: tables built with `strategy_vtable!` in
//! this test binary go through the same checks, wrappers and callbacks as loaded plugins.
use std::sync::atomic::{AtomicBool, Ordering};

use nas_core::{
    decode_params, ComponentInfo, ComponentKind, Drive, EpochReport, GradOrder, Metrics,
    MixingWeights, NasError, Needs, Registry, Result, SearchEnv, SearchOutcome, SearchStrategy,
    SpaceSpec, StepReport,
};
use nas_plugin_host::{load_from_vtable, register_plugin, BoxedStrategyFactory, LoadedPlugin};
use nas_plugin_sdk::{PluginHeader, PluginVTable, PROTOCOL_VERSION};
use serde::Deserialize;
use serde_json::json;

use crate::mock::{Fault, MockEnv};

/// A strategy whose behaviour in `step` is chosen by its `mode` param.
struct Tester {
    mode: String,
    spec: Option<SpaceSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TesterParams {
    mode: String,
}

fn make_tester(params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    let p: TesterParams = decode_params("strategy tester", params)?;
    Ok(Box::new(Tester {
        mode: p.mode,
        spec: None,
    }))
}

impl SearchStrategy for Tester {
    fn name(&self) -> &str {
        "tester"
    }
    fn needs(&self) -> Needs {
        Needs::Trainer
    }
    fn init(&mut self, spec: &SpaceSpec, _seed: u64) -> Result<()> {
        self.spec = Some(spec.clone());
        Ok(())
    }
    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let uniform = MixingWeights::uniform(env.spec());
        let mut metrics = Metrics::new();
        match self.mode.as_str() {
            "panic" => panic!("tester: boom in step"),
            "strategy_error" => return Err(NasError::Strategy("tester: refused".into())),
            "train" => {
                let t = env
                    .trainer()
                    .ok_or_else(|| NasError::Strategy("tester needs a trainer".into()))?;
                let s = t.train_weights(&Drive::mixed(uniform))?;
                metrics.insert("train_loss".into(), s.loss);
                metrics.insert("nan_metric".into(), f64::NAN);
                metrics.insert("inf_metric".into(), f64::NEG_INFINITY);
            }
            "batch" => {
                let b = env.trainer().map(|t| t.batch_size()).unwrap_or(0);
                metrics.insert("batch".into(), b as f64);
            }
            "grad" => {
                let t = env
                    .trainer()
                    .ok_or_else(|| NasError::Strategy("tester needs a trainer".into()))?;
                let g = t.arch_gradient(&Drive::mixed(uniform), GradOrder::First)?;
                metrics.insert("loss".into(), g.loss);
            }
            _ => {}
        }
        Ok(StepReport {
            metrics,
            finished: false,
        })
    }
    fn end_epoch(&mut self, _env: &mut dyn SearchEnv) -> Result<EpochReport> {
        Ok(EpochReport::default())
    }
    fn outcome(&mut self, _env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        Ok(SearchOutcome::default())
    }
    fn mixing_weights(&self) -> Option<MixingWeights> {
        if self.mode == "panic_weights" {
            panic!("tester: boom in mixing_weights");
        }
        self.spec.as_ref().map(MixingWeights::uniform)
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        Ok(json!({ "mode": self.mode }))
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.mode = state["mode"]
            .as_str()
            .ok_or_else(|| NasError::Strategy("tester: bad state".into()))?
            .to_string();
        Ok(())
    }
}

static TESTER: PluginVTable = nas_plugin_sdk::strategy_vtable!(
    make_tester,
    "tester",
    summary = "A scripted test strategy",
    defaults = json!({ "mode": "train" }),
    params = vec![nas_core::ParamDoc::new("mode", "what step does")],
);

fn tester() -> LoadedPlugin {
    unsafe { load_from_vtable(&TESTER, "in-process tester") }.unwrap()
}

fn created(mode: &str, env: &MockEnv) -> Box<dyn SearchStrategy> {
    let mut s = tester().create(&json!({ "mode": mode })).unwrap();
    s.init(&env.spec, 1).unwrap();
    s
}

fn trainer_env() -> MockEnv {
    MockEnv::with_trainer(&[2, 3], vec![1.0; 5], vec![0.0; 5])
}

#[test]
fn a_strategy_runs_through_the_table() {
    let p = tester();
    assert_eq!(p.info().name, "tester");
    assert_eq!(p.info().summary, "A scripted test strategy");
    assert_eq!(p.info().defaults, json!({ "mode": "train" }));
    assert_eq!(p.info().params[0].name, "mode");
    assert_eq!(p.component_info().origin, "in-process tester");

    let mut env = trainer_env();
    let mut s = created("train", &env);
    assert_eq!(s.name(), "tester");
    assert_eq!(s.needs(), Needs::Trainer);
    let r = s.step(&mut env).unwrap();
    assert_eq!(r.metrics["train_loss"], 1.25);
    assert!(r.metrics["nan_metric"].is_nan());
    assert_eq!(r.metrics["inf_metric"], f64::NEG_INFINITY);
    assert_eq!(
        env.trainer_calls(),
        &[crate::mock::Call::Train(Drive::mixed(MixingWeights(vec![
            vec![0.5, 0.5],
            vec![1.0 / 3.0; 3]
        ])))]
    );
    assert_eq!(
        s.mixing_weights(),
        Some(MixingWeights(vec![vec![0.5, 0.5], vec![1.0 / 3.0; 3]]))
    );
    let state = s.save_state().unwrap();
    assert_eq!(state, json!({ "mode": "train" }));
    s.load_state(&json!({ "mode": "batch" })).unwrap();
    assert_eq!(s.step(&mut env).unwrap().metrics["batch"], 4.0);
}

#[test]
fn a_panic_in_the_plugin_becomes_an_error_and_poisons_the_instance() {
    let mut env = trainer_env();
    let mut s = created("panic", &env);
    let e = s.step(&mut env).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, NasError::Plugin(_)), "{m}");
    assert!(
        m.contains("`tester`") && m.contains("in-process tester"),
        "{m}"
    );
    assert!(
        m.contains("panicked in `step`") && m.contains("tester: boom in step"),
        "{m}"
    );
    // The instance is not run again on half-updated state.
    let m = s.step(&mut env).unwrap_err().to_string();
    assert!(m.contains("interrupted by a panic in `step`"), "{m}");
    let m = s.save_state().unwrap_err().to_string();
    assert!(m.contains("interrupted by a panic"), "{m}");
}

#[test]
fn errors_keep_their_variant_through_the_plugin() {
    let mut env = trainer_env();
    let e = created("strategy_error", &env).step(&mut env).unwrap_err();
    assert!(
        matches!(&e, NasError::Strategy(m) if m == "tester: refused"),
        "{e}"
    );

    // A trainer error crosses host -> plugin -> host and is still NonFinite.
    env.trainer.as_mut().unwrap().fault = Fault::NonFiniteGrad;
    let e = created("grad", &env).step(&mut env).unwrap_err();
    assert!(
        matches!(&e, NasError::NonFinite { quantity, step: 7, .. } if quantity == "arch gradient"),
        "{e}"
    );
}

#[test]
fn a_panic_in_a_host_callback_is_an_error_not_an_abort() {
    let mut env = trainer_env();
    env.trainer.as_mut().unwrap().fault = Fault::PanicInTrain;
    let m = created("train", &env)
        .step(&mut env)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("the host panicked in `train_weights`") && m.contains("train_weights exploded"),
        "{m}"
    );

    // Behind an infallible trait method (`batch_size`), the call is cut short and the
    // error still comes back; the instance is then poisoned.
    env.trainer.as_mut().unwrap().fault = Fault::PanicInBatchSize;
    let mut s = created("batch", &env);
    let m = s.step(&mut env).unwrap_err().to_string();
    assert!(m.contains("batch_size exploded"), "{m}");
    let m = s.step(&mut env).unwrap_err().to_string();
    assert!(m.contains("interrupted"), "{m}");
}

#[test]
fn a_missing_trainer_is_a_clear_error() {
    let mut env = MockEnv::with_estimator(&[2], |_| 0.0);
    let e = created("train", &env).step(&mut env).unwrap_err();
    assert!(e.to_string().contains("tester needs a trainer"), "{e}");
}

#[test]
fn a_failure_in_an_infallible_method_surfaces_at_the_next_call() {
    let env = trainer_env();
    let s = created("panic_weights", &env);
    assert_eq!(s.mixing_weights(), None);
    let m = s.save_state().unwrap_err().to_string();
    assert!(
        m.contains("panicked in `mixing_weights`") && m.contains("boom in mixing_weights"),
        "{m}"
    );
}

#[test]
fn bad_params_are_invalid_params_naming_the_key() {
    let e = tester().create(&json!({ "mode": 3 })).err().unwrap();
    assert!(
        matches!(&e, NasError::InvalidParams { component, path, .. }
            if component == "strategy tester" && path == "mode"),
        "{e}"
    );
    let e = tester()
        .create(&json!({ "mode": "x", "bogus": 1 }))
        .err()
        .unwrap();
    assert!(e.to_string().contains("bogus"), "{e}");
}

static RAN: AtomicBool = AtomicBool::new(false);

fn mark_ran() -> &'static str {
    RAN.store(true, Ordering::SeqCst);
    "must never be read"
}

fn make_marked(params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    RAN.store(true, Ordering::SeqCst);
    make_tester(params)
}

/// A table whose `info` and `create` mark that they ran; only used with broken headers.
const MARKED: PluginVTable =
    nas_plugin_sdk::strategy_vtable!(make_marked, "marked", summary = mark_ran());

static BAD_PROTOCOL: PluginVTable = PluginVTable {
    header: PluginHeader {
        protocol_version: PROTOCOL_VERSION + 1,
        ..MARKED.header
    },
    ..MARKED
};

static BAD_MAGIC: PluginVTable = PluginVTable {
    header: PluginHeader {
        magic: 0x1234,
        ..MARKED.header
    },
    ..MARKED
};

static BAD_SIZE: PluginVTable = PluginVTable {
    header: PluginHeader {
        vtable_size: MARKED.header.vtable_size + 8,
        ..MARKED.header
    },
    ..MARKED
};

#[test]
fn header_mismatches_are_refused_before_anything_runs() {
    let m = unsafe { load_from_vtable(&BAD_PROTOCOL, "bad-protocol") }
        .unwrap_err()
        .to_string();
    let line = m.lines().find(|l| l.contains("protocol_version")).unwrap();
    assert!(line.contains(&PROTOCOL_VERSION.to_string()), "{m}");
    assert!(line.contains(&(PROTOCOL_VERSION + 1).to_string()), "{m}");
    assert!(line.contains("differs"), "{m}");
    assert!(m.contains("bad-protocol") && m.contains("marked"), "{m}");

    let m = unsafe { load_from_vtable(&BAD_MAGIC, "bad-magic") }
        .unwrap_err()
        .to_string();
    assert!(m.contains("not a nas plugin"), "{m}");

    let m = unsafe { load_from_vtable(&BAD_SIZE, "bad-size") }
        .unwrap_err()
        .to_string();
    let line = m.lines().find(|l| l.contains("vtable_size")).unwrap();
    assert!(line.contains("differs"), "{m}");

    let m = unsafe { load_from_vtable(std::ptr::null(), "null") }
        .unwrap_err()
        .to_string();
    assert!(m.contains("not a nas plugin"), "{m}");

    assert!(
        !RAN.load(Ordering::SeqCst),
        "a mismatched plugin's code ran"
    );
}

fn builtin(name: &str) -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Strategy,
        name: name.into(),
        summary: String::new(),
        defaults: json!({}),
        params: vec![],
        origin: "built-in".into(),
    }
}

#[test]
fn plugins_register_beside_builtins_and_clashes_are_errors() {
    let mut reg: Registry<BoxedStrategyFactory> = Registry::new(ComponentKind::Strategy);
    reg.register(
        builtin("random"),
        Box::new(|p: &serde_json::Value| make_tester(p)),
    )
    .unwrap();
    let p = tester();
    register_plugin(&mut reg, &p).unwrap();
    assert_eq!(reg.names(), vec!["random", "tester"]);
    let info = reg.info("tester").unwrap();
    assert_eq!(info.origin, "in-process tester");
    assert_eq!(info.kind, ComponentKind::Strategy);
    let made = reg.get("tester").unwrap()(&json!({ "mode": "train" })).unwrap();
    assert_eq!(made.name(), "tester");

    // The same name again: an error that names both origins.
    let e = register_plugin(&mut reg, &p).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("`tester`") && m.contains("already registered"),
        "{m}"
    );

    let mut reg: Registry<BoxedStrategyFactory> = Registry::new(ComponentKind::Strategy);
    reg.register(
        builtin("tester"),
        Box::new(|p: &serde_json::Value| make_tester(p)),
    )
    .unwrap();
    let m = register_plugin(&mut reg, &p).unwrap_err().to_string();
    assert!(
        m.contains("built-in") && m.contains("in-process tester"),
        "{m}"
    );
}
