//! `nas run --resume DIR`: continue a stopped run from its last checkpoint, and what a
//! failed run says about resuming.
use std::path::Path;

use nas_config::Experiment;
use nas_core::{Architecture, Estimator, NasError, Result, Score, SpaceSpec};

use crate::run::{run_resumable, RunOptions};
use nas_registry::{BuildContext, Components};
use nas_rundir::RunSummary;

/// Continues the run in `dir`: loads `dir/config.resolved.yaml` with `sets` applied (only
/// [`nas_rundir::checkpoint::RESUMABLE_KEYS`] may differ from the checkpoint's config), restores
/// the last checkpoint, cuts `metrics.jsonl` and `alpha_history.jsonl` back to it, and runs
/// the remaining epochs into `dir`. A run that had finished computes its outcome again.
pub fn resume_experiment(
    dir: &Path,
    sets: &[String],
    comps: &Components,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let file = dir.join("config.resolved.yaml");
    if !file.is_file() {
        return Err(NasError::Config {
            file: dir.display().to_string(),
            location: None,
            message: "not a run directory: it has no config.resolved.yaml".into(),
        });
    }
    let exp = nas_config::load_experiment(&file, sets)?;
    let ck = nas_rundir::checkpoint::load(dir)?;
    nas_rundir::checkpoint::check_config(&ck, &exp, &file)?;
    let opts = RunOptions {
        out_dir: Some(dir.to_path_buf()),
        ..opts.clone()
    };
    run_resumable(&exp, comps, &opts, Some(ck))
}

/// Cuts an append-only log back to `len` bytes (0: a fresh run starts it empty). A file
/// shorter than `len` means the run directory was changed since the checkpoint.
pub fn cut_back(path: &Path, len: u64) -> Result<()> {
    let f = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && len == 0 => return Ok(()),
        Err(e) => return Err(NasError::io(path, e)),
    };
    let have = f.metadata().map_err(|e| NasError::io(path, e))?.len();
    if have < len {
        return Err(NasError::data(
            path,
            format!(
                "has {have} bytes, the checkpoint recorded {len}: the run directory was \
                 changed since the checkpoint"
            ),
        ));
    }
    f.set_len(len).map_err(|e| NasError::io(path, e))?;
    f.sync_all().map_err(|e| NasError::io(path, e))
}

/// An estimator restored from a checkpoint: the wrapped estimator is stateless apart from
/// its query count (true of the tabular NB201 estimator), so the count is carried over.
struct ResumedEstimator {
    inner: Box<dyn Estimator>,
    before: u64,
}

impl Estimator for ResumedEstimator {
    fn spec(&self) -> &SpaceSpec {
        self.inner.spec()
    }

    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        self.inner.estimate(arch)
    }

    fn queries(&self) -> u64 {
        self.before + self.inner.queries()
    }
}

/// `inner`, counting `before` queries already made (before the checkpoint).
pub fn resumed_estimator(inner: Box<dyn Estimator>, before: u64) -> Box<dyn Estimator> {
    Box::new(ResumedEstimator { inner, before })
}

fn lr_of(params: &serde_json::Value) -> Option<f64> {
    params.get("lr").and_then(|v| v.as_f64())
}

/// `x` as a YAML number: plain for moderate magnitudes (`0.0125`), else scientific (`5e29`).
fn yaml_number(x: f64) -> String {
    if x == 0.0 || (1e-4..1e6).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// What to do after a non-finite `quantity` stopped the run in `dir`: where the last good
/// checkpoint is, and the command that resumes it with half the learning rate (or skips
/// bad batches instead).
pub fn non_finite_hint(exp: &Experiment, comps: &Components, dir: &Path, quantity: &str) -> String {
    let at = match nas_rundir::checkpoint::load(dir) {
        Ok(ck) => format!(
            "the last good checkpoint, {} ({} of {} epochs completed), is intact",
            ck.dir.display(),
            ck.meta.progress.next_epoch,
            exp.budget.epochs
        ),
        Err(_) => "the run has no checkpoint to resume from".into(),
    };
    let arch_side = quantity.contains("architecture") || quantity.contains("mixing");
    let (key, lr) = match (&exp.optimizers.arch, arch_side) {
        (Some(a), true) => ("optimizers.arch.params.lr", lr_of(&a.params)),
        _ => (
            "optimizers.weights.params.lr",
            lr_of(&exp.optimizers.weights.params).or_else(|| {
                let build = comps.optimizers.get(&exp.optimizers.weights.name).ok()?;
                build(&exp.optimizers.weights.params, &BuildContext::new(comps))
                    .ok()
                    .map(|o| o.base_lr())
            }),
        ),
    };
    let lr = lr.map_or("<lower lr>".to_string(), |lr| yaml_number(lr / 2.0));
    format!(
        "{at}; resume with a lower learning rate: `nas run --resume {d} --set {key}={lr}`, \
         or skip non-finite batches: `nas run --resume {d} --set trainer.params.on_non_finite=skip`",
        d = dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_rates_are_yaml_numbers() {
        assert_eq!(yaml_number(0.0125), "0.0125");
        assert_eq!(yaml_number(5e29), "5e29");
        assert_eq!(yaml_number(1.5e-7), "1.5e-7");
        for s in ["0.0125", "5e29", "1.5e-7"] {
            let v = nas_config::yaml::parse(&format!("lr: {s}"), "t").unwrap();
            assert!(v["lr"].is_f64(), "{s}: {v}");
        }
    }

    #[test]
    fn cut_back_truncates_and_refuses_short_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.jsonl");
        cut_back(&p, 0).unwrap(); // missing and empty: fine
        std::fs::write(&p, "line 1\nline 2\n").unwrap();
        cut_back(&p, 7).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "line 1\n");
        let e = cut_back(&p, 100).unwrap_err().to_string();
        assert!(e.contains("changed since the checkpoint"), "{e}");
        cut_back(&p, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        let e = cut_back(&d.path().join("gone.jsonl"), 5).unwrap_err();
        assert!(matches!(e, NasError::Io { .. }), "{e}");
    }
}
