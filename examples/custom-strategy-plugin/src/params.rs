//! The strategy's params: decoded from the YAML `params:` block, checked, documented.
use nas_core::{decode_params, NasError, ParamDoc, Result};
use serde::{Deserialize, Serialize};

/// The component name used in param errors.
pub const COMPONENT: &str = "strategy local_search";

/// Params of [`crate::LocalSearch`]. Unknown keys are errors; missing keys take defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSearchParams {
    /// Estimator queries after which the search reports `finished`.
    pub max_queries: u64,
    /// Test hook: panic inside `step` number `panic_at_step` (0-based), to show that a
    /// panicking plugin fails its run without taking the host down.
    pub panic_at_step: Option<u64>,
}

impl Default for LocalSearchParams {
    fn default() -> Self {
        LocalSearchParams {
            max_queries: 150,
            panic_at_step: None,
        }
    }
}

impl LocalSearchParams {
    /// Decodes and checks a `params` block (`null` = all defaults).
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let p: LocalSearchParams = decode_params(COMPONENT, value)?;
        if p.max_queries == 0 {
            return Err(NasError::InvalidParams {
                component: COMPONENT.into(),
                path: "max_queries".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(p)
    }

    /// The defaults as JSON, for `nas describe`.
    pub fn defaults_json() -> serde_json::Value {
        serde_json::to_value(LocalSearchParams::default()).unwrap_or_default()
    }

    /// Documentation of each param, for `nas describe`.
    pub fn docs() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "max_queries",
                "estimator queries before the search stops (White et al. 2021 compare \
                 methods at equal query budgets)",
            ),
            ParamDoc::new(
                "panic_at_step",
                "test hook: panic in that step (0-based) to exercise the host's panic handling",
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_params_name_the_key() {
        let e =
            LocalSearchParams::from_json(&serde_json::json!({"max_queries": "ten"})).unwrap_err();
        assert!(
            matches!(&e, NasError::InvalidParams { path, .. } if path == "max_queries"),
            "{e}"
        );
        let e = LocalSearchParams::from_json(&serde_json::json!({"max_querys": 3})).unwrap_err();
        assert!(e.to_string().contains("max_querys"), "{e}");
        let e = LocalSearchParams::from_json(&serde_json::json!({"max_queries": 0})).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        assert_eq!(
            LocalSearchParams::from_json(&serde_json::Value::Null).unwrap(),
            LocalSearchParams::default()
        );
    }
}
