//! Architectures of chain spaces as text: the op names of the layers, space-separated
//! (`shufflenet_3x3 xception_3x3 ...`), or JSON: an `architecture.json` written by a run
//! (`{"architecture": {"space": ..., "choices": [...]}, ...}`), a bare
//! `{"space": ..., "choices": [...]}`, or a published-architecture file with the op names
//! (`{"space": ..., "name": ..., "ops": ["k3_e6", ...]}`).
use nas_core::{Architecture, MixingWeights, NasError, Result, SpaceSpec};

/// The op names of `arch`, space-separated.
pub fn format_ops(spec: &SpaceSpec, arch: &Architecture) -> String {
    if let Err(e) = spec.check(arch) {
        return format!("<invalid: {e}>");
    }
    spec.decisions
        .iter()
        .zip(&arch.choices)
        .map(|(d, &c)| d.options[c].name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The architecture of a list of op names, one per decision.
pub fn from_ops(spec: &SpaceSpec, ops: &[String]) -> Result<Architecture> {
    if ops.len() != spec.decisions.len() {
        return Err(NasError::Architecture(format!(
            "{} op names given, space `{}` has {} layers",
            ops.len(),
            spec.space,
            spec.decisions.len()
        )));
    }
    let choices = ops
        .iter()
        .enumerate()
        .map(|(d, name)| {
            spec.option_index(d, name).ok_or_else(|| {
                NasError::Architecture(format!(
                    "layer {} (`{}`) has no op `{name}`; its ops: {}",
                    d,
                    spec.decisions[d].key,
                    spec.decisions[d]
                        .options
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Architecture::new(spec.space.clone(), choices))
}

/// Parses any of the forms in the module documentation.
pub fn parse_ops(spec: &SpaceSpec, text: &str) -> Result<Architecture> {
    let t = text.trim();
    if !t.starts_with('{') {
        let ops: Vec<String> = t.split_whitespace().map(str::to_string).collect();
        return from_ops(spec, &ops);
    }
    let v: serde_json::Value = serde_json::from_str(t)
        .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?;
    if let Some(space) = v.get("space").and_then(|s| s.as_str()) {
        if space != spec.space {
            return Err(NasError::Architecture(format!(
                "the file is for space `{space}`, this space is `{}`",
                spec.space
            )));
        }
    }
    let arch = if let Some(ops) = v.get("ops") {
        let ops: Vec<String> = serde_json::from_value(ops.clone())
            .map_err(|e| NasError::Architecture(format!("`ops` must be a list of names: {e}")))?;
        from_ops(spec, &ops)?
    } else {
        let a = v.get("architecture").cloned().unwrap_or(v);
        serde_json::from_value::<Architecture>(a)
            .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?
    };
    spec.check(&arch)?;
    Ok(arch)
}

/// The derivations of chain spaces: `default` / `argmax`, the largest weight per layer.
pub fn derive(spec: &SpaceSpec, weights: &MixingWeights, mode: &str) -> Result<Architecture> {
    match mode {
        "default" | "argmax" => nas_core::argmax_derive(spec, weights),
        m => Err(NasError::Architecture(format!(
            "unknown derivation mode `{m}` for space `{}`; known: argmax (the default)",
            spec.space
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nas_core::{Cost, Decision, OptionSpec};

    fn spec() -> SpaceSpec {
        let d = |key: &str| Decision {
            key: key.into(),
            group: "s".into(),
            node: None,
            options: ["a", "b", "c"]
                .iter()
                .map(|n| OptionSpec {
                    name: n.to_string(),
                    cost: Cost::default(),
                })
                .collect(),
        };
        SpaceSpec {
            space: "toy".into(),
            decisions: vec![d("l0"), d("l1")],
            fixed_cost: Cost::default(),
        }
    }

    #[test]
    fn every_form_parses_to_the_same_architecture() {
        let s = spec();
        let a = Architecture::new("toy", vec![2, 0]);
        assert_eq!(format_ops(&s, &a), "c a");
        assert_eq!(parse_ops(&s, "c a").unwrap(), a);
        assert_eq!(parse_ops(&s, r#"{"ops": ["c", "a"]}"#).unwrap(), a);
        assert_eq!(
            parse_ops(&s, r#"{"space": "toy", "choices": [2, 0]}"#).unwrap(),
            a
        );
        let run = r#"{"architecture": {"space": "toy", "choices": [2, 0]}, "notation": "c a"}"#;
        assert_eq!(parse_ops(&s, run).unwrap(), a);
    }

    #[test]
    fn bad_names_lengths_and_spaces_are_errors() {
        let s = spec();
        let e = parse_ops(&s, "c z").unwrap_err().to_string();
        assert!(e.contains("`z`") && e.contains("a, b, c"), "{e}");
        assert!(parse_ops(&s, "c").is_err());
        assert!(parse_ops(&s, r#"{"space": "other", "ops": ["a", "a"]}"#).is_err());
        assert!(parse_ops(&s, r#"{"space": "toy", "choices": [3, 0]}"#).is_err());
        assert!(parse_ops(&s, "{not json").is_err());
    }
}
