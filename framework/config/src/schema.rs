//! The `schema:` version key of config files.
use nas_core::Result;
use serde_json::Value;

use crate::source::SourceMap;

/// The schema version this build writes, and the default when a file has no `schema:` key.
pub const SCHEMA_VERSION: u32 = 1;

/// Every schema version this build can read.
pub const SUPPORTED_SCHEMAS: &[u32] = &[1];

/// Default of the `schema` field.
pub(crate) fn default_schema() -> u32 {
    SCHEMA_VERSION
}

fn supported_list() -> String {
    SUPPORTED_SCHEMAS
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails unless `value`'s `schema` key is missing or a supported version.
pub(crate) fn check_schema(value: &Value, sources: &SourceMap) -> Result<()> {
    let Some(v) = value.get("schema") else {
        return Ok(());
    };
    let at = ["schema".to_string()];
    match v.as_u64() {
        Some(n) if SUPPORTED_SCHEMAS.iter().any(|s| u64::from(*s) == n) => Ok(()),
        Some(n) => Err(sources.error(
            &at,
            true,
            format!(
                "unsupported config schema version {n}; this build reads schema version(s): {}",
                supported_list()
            ),
        )),
        None => Err(sources.error(
            &at,
            true,
            format!(
                "`schema` must be a version number; this build reads schema version(s): {}",
                supported_list()
            ),
        )),
    }
}
