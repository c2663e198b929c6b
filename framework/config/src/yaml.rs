//! YAML text <-> `serde_json::Value`, with `serde-saphyr`.
//!
//! Strict booleans: only `true`/`false` (any case) are booleans; YAML 1.1's `yes`, `no`, `on`,
//! `off` stay strings, so `order: on` cannot silently become `true`. Duplicate keys are errors.
use nas_core::{NasError, Result};
use serde::Serialize;
use serde_json::Value;

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    }
}

/// Parses one YAML document to a value. An empty document is `null`. Syntax errors name
/// `file` and the line and column the parser reports.
pub fn parse(text: &str, file: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str_with_options::<Value>(text, options()).map_err(|e| {
        let at = e.location().filter(|l| l.line() > 0);
        let mut message = e.without_snippet().to_string();
        if let Some(l) = at {
            // The location goes in its own field; drop the parser's copy of it.
            let suffix = format!(" at line {}, column {}", l.line(), l.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_string();
            }
        }
        NasError::Config {
            file: file.to_string(),
            location: at.map(|l| format!("{}:{}", l.line(), l.column())),
            message: format!("invalid YAML: {message}"),
        }
    })
}

/// Writes `value` as YAML.
pub fn write<T: Serialize>(value: &T) -> Result<String> {
    serde_saphyr::to_string(value)
        .map_err(|e| NasError::Other(format!("cannot write the config as YAML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_booleans_and_plain_types() {
        let v = parse(
            "a: yes\nb: true\nc: 3\nd: 0.5\ne: second\nf: null\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": "yes", "b": true, "c": 3, "d": 0.5, "e": "second", "f": null})
        );
        assert_eq!(parse("  \n", "t.yaml").unwrap(), Value::Null);
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml").unwrap_err();
        let NasError::Config { file, location, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(file, "bad.yaml");
        let loc = location.as_deref().unwrap_or("");
        let line: usize = loc.split(':').next().unwrap_or("").parse().unwrap_or(0);
        // The unclosed list starts on line 2; the parser notices on line 2 or 3.
        assert!((2..=4).contains(&line), "{err}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        assert!(parse("a: 1\na: 2\n", "d.yaml").is_err());
    }

    #[test]
    fn written_values_read_back_equal() {
        let v = json!({
            "s": ["yes", "no", "on", "1", "1.0", "null", "~", "", "a: b", "#x", "- y", "true"],
            "f": [0.025, 3e-4, 1.0, -0.0, 1e-12, 123456789.125],
            "i": [0, -7, 18446744073709551615u64],
            "b": [true, false],
            "n": null,
            "m": {}, "l": [], "nested": {"k": [{"a": 1}]}
        });
        let text = write(&v).unwrap();
        assert_eq!(parse(&text, "w.yaml").unwrap(), v, "{text}");
    }
}
