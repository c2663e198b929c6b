//! One explicit registry of named factories (DESIGN.md section 3). Built-ins register
//! through ordinary functions; loaded plugins register into the same registry.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{NasError, ParamDoc, Result};

/// Kind of component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// A search space.
    Space,
    /// A search strategy.
    Strategy,
    /// A supernet trainer.
    Trainer,
    /// An estimator.
    Estimator,
    /// An optimizer.
    Optimizer,
    /// A learning-rate schedule.
    Schedule,
    /// A data set.
    Dataset,
}

impl ComponentKind {
    /// The plural, for headings (`strategies`, not `strategys`).
    pub fn plural(&self) -> &'static str {
        match self {
            ComponentKind::Space => "spaces",
            ComponentKind::Strategy => "strategies",
            ComponentKind::Trainer => "trainers",
            ComponentKind::Estimator => "estimators",
            ComponentKind::Optimizer => "optimizers",
            ComponentKind::Schedule => "schedules",
            ComponentKind::Dataset => "datasets",
        }
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ComponentKind::Space => "space",
            ComponentKind::Strategy => "strategy",
            ComponentKind::Trainer => "trainer",
            ComponentKind::Estimator => "estimator",
            ComponentKind::Optimizer => "optimizer",
            ComponentKind::Schedule => "schedule",
            ComponentKind::Dataset => "dataset",
        };
        f.write_str(s)
    }
}

/// What `nas list` and `nas describe` show about a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Kind.
    pub kind: ComponentKind,
    /// Registered name.
    pub name: String,
    /// One line.
    pub summary: String,
    /// The params with their defaults (a JSON object).
    pub defaults: serde_json::Value,
    /// Documentation of each param.
    pub params: Vec<ParamDoc>,
    /// Where it comes from (`built-in` or a plugin path).
    pub origin: String,
}

/// Named factories of one kind of component.
pub struct Registry<F> {
    kind: ComponentKind,
    entries: BTreeMap<String, (ComponentInfo, F)>,
}

impl<F> Registry<F> {
    /// An empty registry for `kind`.
    pub fn new(kind: ComponentKind) -> Self {
        Registry {
            kind,
            entries: BTreeMap::new(),
        }
    }

    /// Registers a factory; a name registered twice is an error.
    pub fn register(&mut self, info: ComponentInfo, factory: F) -> Result<()> {
        if self.entries.contains_key(&info.name) {
            return Err(NasError::DuplicateComponent {
                kind: self.kind.to_string(),
                name: info.name,
            });
        }
        self.entries.insert(info.name.clone(), (info, factory));
        Ok(())
    }

    /// The factory named `name`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<&F> {
        self.entries
            .get(name)
            .map(|(_, f)| f)
            .ok_or_else(|| NasError::UnknownComponent {
                kind: self.kind.to_string(),
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    /// Information about `name`, if registered.
    pub fn info(&self, name: &str) -> Option<&ComponentInfo> {
        self.entries.get(name).map(|(i, _)| i)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Every entry's info, sorted by name.
    pub fn infos(&self) -> impl Iterator<Item = &ComponentInfo> {
        self.entries.values().map(|(i, _)| i)
    }

    /// True when `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Strategy,
            name: name.into(),
            summary: String::new(),
            defaults: serde_json::json!({}),
            params: vec![],
            origin: "built-in".into(),
        }
    }

    #[test]
    fn duplicate_and_unknown_names_are_errors() {
        let mut r: Registry<u32> = Registry::new(ComponentKind::Strategy);
        r.register(info("darts"), 1).unwrap();
        assert!(matches!(
            r.register(info("darts"), 2),
            Err(NasError::DuplicateComponent { .. })
        ));
        let e = r.get("drats").unwrap_err().to_string();
        assert!(e.contains("drats") && e.contains("darts"), "{e}");
        assert_eq!(*r.get("darts").unwrap(), 1);
    }
}
