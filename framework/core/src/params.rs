//! Decoding a component's untyped `params` block with the key path in every error.
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{NasError, Result};

/// Documentation of one parameter, for `nas describe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamDoc {
    /// Key inside `params`.
    pub name: String,
    /// What it means, with its source (paper, reference code) where it has one.
    pub doc: String,
}

impl ParamDoc {
    /// A new parameter doc.
    pub fn new(name: &str, doc: &str) -> Self {
        ParamDoc {
            name: name.into(),
            doc: doc.into(),
        }
    }
}

/// Decodes `value` (a `params` block, `null` meaning "all defaults") into `T`.
/// `T` should use `#[serde(deny_unknown_fields, default)]` so that unknown keys are errors
/// and missing keys take their defaults. Errors name the component and the key path.
pub fn decode_params<T: DeserializeOwned>(component: &str, value: &serde_json::Value) -> Result<T> {
    let value = if value.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        value.clone()
    };
    serde_path_to_error::deserialize(value).map_err(|e| NasError::InvalidParams {
        component: component.to_string(),
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Fails with [`NasError::InvalidParams`] unless `ok`.
pub fn ensure(ok: bool, component: &str, path: &str, message: impl Into<String>) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(NasError::InvalidParams {
            component: component.to_string(),
            path: path.to_string(),
            message: message.into(),
        })
    }
}
