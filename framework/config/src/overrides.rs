//! `--set a.b.c=value` overrides, applied after every file.
//!
//! The value is parsed as YAML (strict booleans), so `--set budget.epochs=3` is the integer 3,
//! `--set strategy.params.order=second` the string `second`, `--set data.augment.hflip=true`
//! a boolean and `--set plugins=[a.so]` a list. An empty value is `null`. The value replaces
//! whatever was at the key; missing intermediate mappings are created.
use nas_core::{NasError, Result};
use serde_json::Value;

use crate::source::{Layer, SourceMap};
use crate::tree::{set_path, split_path};
use crate::yaml;

/// One parsed `--set`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The key path, one segment per key.
    pub path: Vec<String>,
    /// The new value.
    pub value: Value,
    /// The text as given, for messages.
    pub text: String,
}

fn bad(text: &str, message: String) -> NasError {
    NasError::Config {
        file: format!("--set {text}"),
        location: None,
        message,
    }
}

/// Parses `a.b.c=value`. Errors say what is wrong with the text.
pub fn parse_override(text: &str) -> Result<Override> {
    let Some((key, raw)) = text.split_once('=') else {
        return Err(bad(
            text,
            "expected KEY=VALUE with a dotted key, e.g. `budget.epochs=3`".into(),
        ));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(bad(text, "the key before `=` is empty".into()));
    }
    let path = split_path(key);
    if let Some(seg) = path
        .iter()
        .find(|s| s.is_empty() || s.chars().any(char::is_whitespace))
    {
        let what = if seg.is_empty() {
            "an empty segment".to_string()
        } else {
            format!("the segment `{seg}` with white space")
        };
        return Err(bad(text, format!("the key `{key}` has {what}")));
    }
    let name = format!("--set {text}");
    let value = yaml::parse(raw, &name)?;
    Ok(Override {
        path,
        value,
        text: text.to_string(),
    })
}

/// Applies `sets` in order onto `value`, each above all earlier layers in `sources`.
pub(crate) fn apply_overrides(
    value: &mut Value,
    sources: &mut SourceMap,
    sets: &[String],
) -> Result<()> {
    for text in sets {
        let o = parse_override(text)?;
        set_path(value, &o.path, o.value).map_err(|m| NasError::Config {
            file: format!("--set {text}"),
            location: Some(format!("key `{}`", o.path.join("."))),
            message: m,
        })?;
        sources.push_top(Layer {
            name: format!("--set {text}"),
            index: None,
            mount: o.path,
            at: Vec::new(),
            replaces: true,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_typed_as_yaml() {
        let cases = [
            ("budget.epochs=3", json!(3)),
            ("strategy.params.order=second", json!("second")),
            ("a=0.5", json!(0.5)),
            ("a=true", json!(true)),
            ("a=yes", json!("yes")),
            ("a='3'", json!("3")),
            ("a=[1, x]", json!([1, "x"])),
            ("a={k: v}", json!({"k": "v"})),
            ("a=", Value::Null),
            ("a=x=y", json!("x=y")),
        ];
        for (text, want) in cases {
            assert_eq!(parse_override(text).unwrap().value, want, "{text}");
        }
        assert_eq!(parse_override(" a.b =1").unwrap().path, ["a", "b"]);
    }

    #[test]
    fn malformed_sets_are_clear_errors() {
        for (text, needle) in [
            ("budget.epochs", "KEY=VALUE"),
            ("=3", "empty"),
            ("a..b=1", "empty segment"),
            ("a.=1", "empty segment"),
            ("a b=1", "white space"),
            ("a=[1,", "invalid YAML"),
        ] {
            let err = parse_override(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.contains(&format!("--set {text}")), "{text}: {err}");
        }
    }
}
