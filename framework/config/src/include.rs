//! Reading a config file with its `include:` chain into one merged value and its layers.
//!
//! `include: base.yaml` or `include: [a.yaml, b.yaml]` (paths relative to the including file)
//! merges the included files first, in order, then the including file over them: mappings merge
//! key by key, scalars and lists replace, the including file wins. Includes nest; a file that
//! includes itself, directly or through others, is an error naming the cycle.
use std::path::{Component as PathPart, Path, PathBuf};
use std::sync::Arc;

use nas_core::{NasError, Result};
use serde_json::{Map, Value};

use crate::positions::PosIndex;
use crate::schema::check_schema;
use crate::source::{Layer, SourceMap};
use crate::tree::{deep_merge, kind_name};
use crate::yaml;

/// A merged config and where its keys came from.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The merged value (a mapping), without `include` keys.
    pub value: Value,
    /// Its layers, the winning one first.
    pub sources: SourceMap,
}

/// Reads `path` and everything it includes.
pub(crate) fn resolve(path: &Path) -> Result<Resolved> {
    let mut stack = Vec::new();
    let (value, layers) = resolve_file(path, &mut stack)?;
    Ok(Resolved {
        value,
        sources: SourceMap::new(layers),
    })
}

/// `a/b/../c.yaml` -> `a/c.yaml`, without touching the file system (names in messages).
fn tidy(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            PathPart::CurDir => {}
            PathPart::ParentDir
                if matches!(out.components().next_back(), Some(PathPart::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Reads one file and its own text's positions.
pub(crate) fn read_file(path: &Path) -> Result<(String, Value, Arc<PosIndex>)> {
    let name = tidy(path).display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| NasError::io(&name, e))?;
    let value = yaml::parse(&text, &name)?;
    let index = Arc::new(PosIndex::build(&text));
    let value = match value {
        Value::Null => Value::Object(Map::new()),
        v @ Value::Object(_) => v,
        other => {
            return Err(NasError::Config {
                file: name,
                location: Some("1:1".into()),
                message: format!(
                    "a config file must be a mapping of keys to values, found {}",
                    kind_name(&other)
                ),
            })
        }
    };
    Ok((name, value, index))
}

fn resolve_file(path: &Path, stack: &mut Vec<PathBuf>) -> Result<(Value, Vec<Layer>)> {
    let (name, mut own, index) = read_file(path)?;
    let own_layer = Layer::file(name.clone(), index.clone());
    let own_map = SourceMap::new(vec![own_layer.clone()]);
    check_schema(&own, &own_map)?;
    let includes = take_includes(&mut own, &own_map)?;

    let canonical = path.canonicalize().map_err(|e| NasError::io(&name, e))?;
    stack.push(canonical);
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut merged = Value::Object(Map::new());
    let mut child_layers: Vec<Vec<Layer>> = Vec::new();
    for (inc, at) in &includes {
        let child = dir.join(inc);
        let child_canonical = child.canonicalize().map_err(|e| {
            own_map.error(
                at,
                true,
                format!("cannot read included file {}: {e}", tidy(&child).display()),
            )
        })?;
        if let Some(start) = stack.iter().position(|p| *p == child_canonical) {
            let cycle: Vec<String> = stack[start..]
                .iter()
                .chain(std::iter::once(&child_canonical))
                .map(|p| p.display().to_string())
                .collect();
            return Err(own_map.error(at, true, format!("include cycle: {}", cycle.join(" -> "))));
        }
        let (value, layers) = resolve_file(&child, stack)?;
        deep_merge(&mut merged, value);
        child_layers.push(layers);
    }
    stack.pop();
    deep_merge(&mut merged, own);
    let mut layers = vec![own_layer];
    for l in child_layers.into_iter().rev() {
        layers.extend(l);
    }
    Ok((merged, layers))
}

/// Removes and returns the `include` list of a file's own value: each file name with the key
/// path it was written at (`include` for a single name, `include.N` in a list).
fn take_includes(own: &mut Value, map: &SourceMap) -> Result<Vec<(String, Vec<String>)>> {
    let Some(inc) = own.as_object_mut().and_then(|m| m.remove("include")) else {
        return Ok(Vec::new());
    };
    let bad = |path: Vec<String>, v: &Value| {
        map.error(
            &path,
            true,
            format!(
                "`include` takes a file name or a list of file names, found {}",
                kind_name(v)
            ),
        )
    };
    match inc {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![(s, vec!["include".into()])]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let at = vec!["include".to_string(), i.to_string()];
                match v {
                    Value::String(s) => Ok((s, at)),
                    other => Err(bad(at, &other)),
                }
            })
            .collect(),
        other => Err(bad(vec!["include".into()], &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_removes_dot_and_dot_dot() {
        assert_eq!(
            tidy(Path::new("configs/exp/../base/./a.yaml")),
            PathBuf::from("configs/base/a.yaml")
        );
        assert_eq!(tidy(Path::new("../a.yaml")), PathBuf::from("../a.yaml"));
    }
}
