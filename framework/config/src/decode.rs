//! Typed decode of a merged value, with the key path, file, line and column in every error.
use nas_core::Result;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::source::SourceMap;

/// Decodes `value` into `T` (whose blocks deny unknown keys). An error names the key path
/// (`serde_path_to_error`) and, through `sources`, the file, line and column that wrote it.
pub(crate) fn decode<T: DeserializeOwned>(value: Value, sources: &SourceMap) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(index.to_string()),
                Segment::Map { key } => Some(key.clone()),
                Segment::Enum { variant } => Some(variant.clone()),
                Segment::Unknown => None,
            })
            .collect();
        let message = e.inner().to_string();
        // An unknown key is best shown at the key; a wrong value at the value.
        let at_key = message.starts_with("unknown field") || message.starts_with("missing field");
        sources.error(&path, !at_key, message)
    })
}
