//! Provenance: which file (or `--set`) gave each key of a merged config, and where.
//!
//! A merged config is built from layers: included files, the experiment file, sweep settings and
//! `--set` overrides. [`SourceMap`] keeps them in precedence order (the layer that wins first) and
//! answers "where was key path P written?" by the merge rules themselves: a mapping in a file
//! merges with lower layers, anything else replaces them.
use std::sync::Arc;

use nas_core::NasError;

use crate::positions::{NodeKind, Pos, PosIndex};
use crate::tree::join_path;

/// One source of settings in a merged config.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// What to call it in messages: a file path, or `--set a.b=c`.
    pub name: String,
    /// Positions in the layer's text (none for a `--set`).
    pub index: Option<Arc<PosIndex>>,
    /// The config key path this layer writes at (empty: the whole document).
    pub mount: Vec<String>,
    /// The key path inside the layer's text that corresponds to `mount`.
    pub at: Vec<String>,
    /// Whether the layer replaces the subtree at `mount` (a setting) or deep-merges into it
    /// (a file).
    pub replaces: bool,
}

impl Layer {
    /// A whole file, deep-merged over lower layers.
    pub fn file(name: String, index: Arc<PosIndex>) -> Layer {
        Layer {
            name,
            index: Some(index),
            mount: Vec::new(),
            at: Vec::new(),
            replaces: false,
        }
    }
}

/// Where a key path was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file, or `--set a.b=c`.
    pub file: String,
    /// Line and column, when known.
    pub pos: Option<Pos>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}", self.file, p),
            None => write!(f, "{}", self.file),
        }
    }
}

/// The layers of one merged config, the winning layer first.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    layers: Vec<Layer>,
}

impl SourceMap {
    /// A map of these layers (highest precedence first).
    pub(crate) fn new(layers: Vec<Layer>) -> SourceMap {
        SourceMap { layers }
    }

    /// Puts `layer` above all others.
    pub(crate) fn push_top(&mut self, layer: Layer) {
        self.layers.insert(0, layer);
    }

    /// The name of the highest-precedence whole-file layer (the experiment file itself), for
    /// errors that no layer explains.
    pub fn main_file(&self) -> Option<&str> {
        self.main_layer().map(|l| l.name.as_str())
    }

    /// The highest-precedence whole-file layer.
    pub(crate) fn main_layer(&self) -> Option<&Layer> {
        self.layers
            .iter()
            .find(|l| l.index.is_some() && l.mount.is_empty())
    }

    /// Where `path` was written. `prefer_value`: point at the value rather than the key (for
    /// wrong-type errors). When no layer has `path` itself, the nearest enclosing key that some
    /// layer has is used.
    pub fn locate(&self, path: &[String], prefer_value: bool) -> Option<Place> {
        for n in (0..=path.len()).rev() {
            if let Some(p) = self.locate_exact(&path[..n], prefer_value && n == path.len()) {
                return Some(p);
            }
        }
        None
    }

    fn locate_exact(&self, q: &[String], prefer_value: bool) -> Option<Place> {
        let mut inside: Option<Place> = None;
        for layer in &self.layers {
            if q.starts_with(&layer.mount) {
                let mut text_path = layer.at.clone();
                text_path.extend_from_slice(&q[layer.mount.len()..]);
                let Some(idx) = &layer.index else {
                    // A setting replaces everything below its mount.
                    return Some(Place {
                        file: layer.name.clone(),
                        pos: None,
                    });
                };
                if let Some(e) = idx.get(&text_path) {
                    let pos = if prefer_value {
                        e.value
                    } else {
                        e.key_or_value()
                    };
                    return Some(Place {
                        file: layer.name.clone(),
                        pos: Some(pos),
                    });
                }
                if layer.replaces {
                    return None;
                }
                // A scalar or list above `q` in this file replaced whatever lower layers had.
                let blocked = (layer.at.len()..text_path.len()).any(|k| {
                    idx.get(&text_path[..k])
                        .is_some_and(|e| e.kind != NodeKind::Map)
                });
                if blocked {
                    return None;
                }
            } else if layer.mount.starts_with(q) && inside.is_none() {
                inside = Some(Place {
                    file: layer.name.clone(),
                    pos: layer
                        .index
                        .as_ref()
                        .and_then(|i| i.get(&layer.at))
                        .map(|e| e.key_or_value()),
                });
            }
        }
        inside
    }

    /// A [`NasError::Config`] for `message` at key path `path`, naming the file, line and column
    /// where the key was written (or the main file and the key path alone).
    pub fn error(
        &self,
        path: &[String],
        prefer_value: bool,
        message: impl Into<String>,
    ) -> NasError {
        let place = self.locate(path, prefer_value);
        let key = format!("key `{}`", join_path(path));
        let (file, location) = match place {
            Some(Place { file, pos: Some(p) }) => (file, format!("{p}, {key}")),
            Some(Place { file, pos: None }) => (file, key),
            None => (self.main_file().unwrap_or("<config>").to_string(), key),
        };
        NasError::Config {
            file,
            location: Some(location),
            message: message.into(),
        }
    }
}

/// The provenance of a decoded config: where each key came from, for error messages.
///
/// It is not part of the config's value: two configs with equal settings compare equal
/// whatever files they were read from, and it is never written out.
#[derive(Clone, Default)]
pub struct Provenance(pub(crate) Option<Arc<SourceMap>>);

impl Provenance {
    /// Provenance from a source map.
    pub(crate) fn new(map: SourceMap) -> Provenance {
        Provenance(Some(Arc::new(map)))
    }

    /// The source map, when the config was loaded from files.
    pub fn map(&self) -> Option<&SourceMap> {
        self.0.as_deref()
    }
}

impl PartialEq for Provenance {
    /// Always equal: provenance is metadata, not configuration.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => write!(f, "Provenance(none)"),
            Some(m) => write!(
                f,
                "Provenance({:?})",
                m.layers.iter().map(|l| &l.name).collect::<Vec<_>>()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::split_path;

    fn file(name: &str, text: &str) -> Layer {
        Layer::file(name.into(), Arc::new(PosIndex::build(text)))
    }

    #[test]
    fn the_winning_layer_is_named_and_replaced_subtrees_are_not() {
        let base = file("base.yaml", "a:\n  x: 1\n  y: 2\nl:\n  - 1\n");
        let top = file("top.yaml", "a:\n  y: 3\nl: 4\n");
        let set = Layer {
            name: "--set a.z=5".into(),
            index: None,
            mount: split_path("a.z"),
            at: Vec::new(),
            replaces: true,
        };
        let map = SourceMap::new(vec![set, top, base]);
        let at = |p: &str| map.locate(&split_path(p), false).map(|p| p.to_string());
        assert_eq!(at("a.x").as_deref(), Some("base.yaml:2:3"));
        assert_eq!(at("a.y").as_deref(), Some("top.yaml:2:3"));
        assert_eq!(at("a.z").as_deref(), Some("--set a.z=5"));
        // `l` is a scalar in top.yaml: base.yaml's list item no longer exists; fall back to `l`.
        assert_eq!(at("l.0").as_deref(), Some("top.yaml:3:1"));
        // A key nobody wrote falls back to its parent.
        assert_eq!(at("a.q").as_deref(), Some("top.yaml:1:1"));
        assert_eq!(
            map.locate(&split_path("a.y"), true).unwrap().to_string(),
            "top.yaml:2:6"
        );
    }
}
