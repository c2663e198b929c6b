//! Which config a checkpoint belongs to: the resolved experiment without the keys that may
//! change on resume, in a canonical form, and its hash.
//!
//! **Keys that may change on resume** ([`RESUMABLE_KEYS`]): the learning rates and gradient
//! clipping of both optimizers, the trainer's `on_non_finite`, and the whole `output`
//! block. These are the knobs a user turns after a numerical failure (resume with a lower
//! learning rate, or skip bad batches), and none of them changes the shape of any saved
//! state: the learning rate is not part of an optimizer's state (its schedule scales the
//! configured rate per epoch), and clipping and skipping act on each new step only.
//! Everything else (space, strategy, data, seed, budget, schedules, ...) must be equal, or
//! the resumed run would not be the run that was checkpointed.
use nas_config::Experiment;
use nas_core::{NasError, Result};
use serde_json::{Map, Value};

use super::store::fnv1a64;

/// Key paths of the resolved config that may differ between a checkpoint and its resume.
pub const RESUMABLE_KEYS: &[&str] = &[
    "optimizers.weights.params.lr",
    "optimizers.arch.params.lr",
    "optimizers.weights.clip_grad_norm",
    "optimizers.arch.clip_grad_norm",
    "trainer.params.on_non_finite",
    "output",
];

fn remove_path(v: &mut Value, path: &[&str]) {
    match path {
        [] => {}
        [last] => {
            if let Value::Object(m) = v {
                m.remove(*last);
            }
        }
        [first, rest @ ..] => {
            if let Some(child) = v.as_object_mut().and_then(|m| m.get_mut(*first)) {
                remove_path(child, rest);
            }
        }
    }
}

/// Sorted keys, without `null` values and empty mappings (both mean "the defaults").
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut pairs: Vec<(String, Value)> = m
                .into_iter()
                .map(|(k, v)| (k, canonical(v)))
                .filter(|(_, v)| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().collect::<Map<String, Value>>())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The part of `exp` a checkpoint is bound to, canonical: [`RESUMABLE_KEYS`] removed,
/// keys sorted, defaults (`null`, `{}`) dropped; a missing `trainer` reads as the
/// `supernet` trainer the runner uses then.
pub fn fingerprint_value(exp: &Experiment) -> Result<Value> {
    let mut v = serde_json::to_value(exp)
        .map_err(|e| NasError::Other(format!("serialising the experiment: {e}")))?;
    if let Value::Object(m) = &mut v {
        if m.get("trainer").is_none_or(Value::is_null) {
            m.insert("trainer".into(), serde_json::json!({"name": "supernet"}));
        }
    }
    for key in RESUMABLE_KEYS {
        remove_path(&mut v, &key.split('.').collect::<Vec<_>>());
    }
    Ok(canonical(v))
}

/// The hash of a [`fingerprint_value`].
pub fn fingerprint(v: &Value) -> String {
    fnv1a64(v.to_string().as_bytes())
}

/// Key paths where `a` and `b` differ, with both values (`None`: absent), sorted.
pub fn differences(a: &Value, b: &Value) -> Vec<(String, Option<Value>, Option<Value>)> {
    let mut out = Vec::new();
    diff_into("", Some(a), Some(b), &mut out);
    out
}

fn diff_into(
    path: &str,
    a: Option<&Value>,
    b: Option<&Value>,
    out: &mut Vec<(String, Option<Value>, Option<Value>)>,
) {
    let empty = Map::new();
    fn as_map<'a>(
        v: Option<&'a Value>,
        empty: &'a Map<String, Value>,
    ) -> Option<&'a Map<String, Value>> {
        match v {
            Some(Value::Object(m)) => Some(m),
            None => Some(empty),
            Some(_) => None,
        }
    }
    let objects = matches!(a, Some(Value::Object(_))) || matches!(b, Some(Value::Object(_)));
    match (as_map(a, &empty), as_map(b, &empty)) {
        (Some(x), Some(y)) if objects => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_into(&p, x.get(k), y.get(k), out);
            }
        }
        _ if a != b => out.push((path.to_string(), a.cloned(), b.cloned())),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exp(extra: &str) -> Experiment {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("e.yaml");
        std::fs::write(
            &p,
            format!(
                "schema: 1\nname: e\nspace: {{name: darts}}\nstrategy: {{name: darts}}\n\
                 optimizers:\n  weights: {{name: sgd, params: {{lr: 0.025}}}}\n{extra}"
            ),
        )
        .unwrap();
        nas_config::load_experiment(&p, &[]).unwrap()
    }

    #[test]
    fn resumable_keys_do_not_change_the_fingerprint() {
        let a = exp("");
        let mut b = exp("output: {log_every: 3, checkpoint_every: 5}\n");
        b.optimizers.weights.params = json!({"lr": 0.0125});
        b.optimizers.weights.clip_grad_norm = Some(1.0);
        b.trainer = Some(nas_config::Component {
            name: "supernet".into(),
            params: json!({"on_non_finite": "skip"}),
        });
        let (fa, fb) = (
            fingerprint_value(&a).unwrap(),
            fingerprint_value(&b).unwrap(),
        );
        assert_eq!(fa, fb, "{:?}", differences(&fa, &fb));
        assert_eq!(fingerprint(&fa), fingerprint(&fb));
    }

    #[test]
    fn other_keys_do_and_are_named() {
        let a = fingerprint_value(&exp("")).unwrap();
        let mut e = exp("");
        e.seed = 7;
        e.optimizers.weights.params = json!({"lr": 0.025, "momentum": 0.5});
        let b = fingerprint_value(&e).unwrap();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let d = differences(&a, &b);
        let keys: Vec<&str> = d.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["optimizers.weights.params.momentum", "seed"]);
        assert_eq!(d[1].1, Some(json!(0)));
        assert_eq!(d[1].2, Some(json!(7)));
    }

    #[test]
    fn canonical_form_is_independent_of_key_order_and_defaults() {
        let a = canonical(json!({"b": 1, "a": {"y": null, "x": [1, {}]}, "c": {}}));
        assert_eq!(a.to_string(), r#"{"a":{"x":[1,{}]},"b":1}"#);
    }
}
