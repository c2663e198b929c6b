//! Range checks of a decoded experiment, each naming the key it is about.
use crate::blocks::{Component, OptimizerBlock};
use crate::experiment::{Experiment, TrainBlock};
use crate::tree::split_path;

/// A failed check: the key path and what is wrong.
pub(crate) type Failure = (Vec<String>, String);

fn fail(path: &str, message: String) -> Result<(), Failure> {
    Err((split_path(path), message))
}

fn at_least_one(path: &str, v: usize) -> Result<(), Failure> {
    if v >= 1 {
        Ok(())
    } else {
        fail(path, format!("`{path}` must be at least 1, got {v}"))
    }
}

fn component(path: &str, c: &Component) -> Result<(), Failure> {
    if c.name.trim().is_empty() {
        fail(
            &format!("{path}.name"),
            format!("`{path}.name` must not be empty"),
        )
    } else {
        Ok(())
    }
}

fn optimizer(path: &str, o: &OptimizerBlock) -> Result<(), Failure> {
    if o.name.trim().is_empty() {
        return fail(
            &format!("{path}.name"),
            format!("`{path}.name` must not be empty"),
        );
    }
    if let Some(s) = &o.schedule {
        component(&format!("{path}.schedule"), s)?;
    }
    if let Some(c) = o.clip_grad_norm {
        if !(c.is_finite() && c > 0.0) {
            let p = format!("{path}.clip_grad_norm");
            return fail(&p, format!("`{p}` must be a positive number, got {c}"));
        }
    }
    Ok(())
}

fn train(t: &TrainBlock) -> Result<(), Failure> {
    at_least_one("train.epochs", t.epochs)?;
    at_least_one("train.batch_size", t.batch_size)?;
    at_least_one("train.channels", t.channels)?;
    at_least_one("train.layers", t.layers)?;
    at_least_one("train.eval_every", t.eval_every)?;
    if let Some(n) = t.limit_batches {
        at_least_one("train.limit_batches", n)?;
    }
    if !(t.auxiliary_weight.is_finite() && t.auxiliary_weight >= 0.0) {
        return fail(
            "train.auxiliary_weight",
            format!(
                "`train.auxiliary_weight` must be a number >= 0, got {}",
                t.auxiliary_weight
            ),
        );
    }
    if !(0.0..1.0).contains(&t.drop_path) {
        return fail(
            "train.drop_path",
            format!("`train.drop_path` must be in [0, 1), got {}", t.drop_path),
        );
    }
    optimizer("train.optimizer", &t.optimizer)
}

/// Checks the ranges the types cannot express. The first failure is returned.
pub(crate) fn check_experiment(e: &Experiment) -> Result<(), Failure> {
    if e.name.trim().is_empty() {
        return fail("name", "`name` must not be empty".into());
    }
    component("space", &e.space)?;
    component("strategy", &e.strategy)?;
    if let Some(t) = &e.trainer {
        component("trainer", t)?;
    }
    if let Some(t) = &e.estimator {
        component("estimator", t)?;
    }
    optimizer("optimizers.weights", &e.optimizers.weights)?;
    if let Some(a) = &e.optimizers.arch {
        optimizer("optimizers.arch", a)?;
    }
    if let Some(d) = &e.data {
        if d.name.trim().is_empty() {
            return fail("data.name", "`data.name` must not be empty".into());
        }
        at_least_one("data.batch_size", d.batch_size)?;
        if let Some(n) = d.eval_batch_size {
            at_least_one("data.eval_batch_size", n)?;
        }
        if !(d.train_portion > 0.0 && d.train_portion < 1.0) {
            return fail(
                "data.train_portion",
                format!(
                    "`data.train_portion` must be strictly between 0 and 1, got {}",
                    d.train_portion
                ),
            );
        }
    }
    at_least_one("budget.epochs", e.budget.epochs)?;
    if let Some(n) = e.budget.steps_per_epoch {
        at_least_one("budget.steps_per_epoch", n)?;
    }
    at_least_one("output.log_every", e.output.log_every)?;
    for (i, p) in e.plugins.iter().enumerate() {
        if p.trim().is_empty() {
            return fail(
                &format!("plugins.{i}"),
                "a plugin path must not be empty".into(),
            );
        }
    }
    if let Some(t) = &e.train {
        train(t)?;
    }
    Ok(())
}
