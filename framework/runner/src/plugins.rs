//! Strategy plugins named in an experiment's `plugins:` list (DESIGN.md section 3): where
//! each path points, loading each library once per process, and registering its strategy
//! beside the built-ins in a run's own copy of the [`Components`].
//!
//! * A relative path is taken relative to the directory of the file that wrote it (the
//!   experiment file, an included base file, or a sweep file); a path given with `--set`,
//!   or in an experiment built in code, relative to the current directory.
//! * A library is opened once per process and never unloaded; naming the same file again
//!   (in the next run of a sweep, or twice in one list) reuses it.
//! * Every load failure (missing file, not a library, not a nas plugin, another ABI or
//!   protocol, a strategy name that is already registered) is a [`NasError::Config`] that
//!   names the `plugins.N` entry and its place in the file, so that `nas` exits with the
//!   configuration exit code before anything trains.
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use nas_config::Experiment;
use nas_core::{NasError, Result};
use nas_plugin_host::{load_plugin, register_plugin_with, LoadedPlugin};

use nas_registry::{BuildContext, Components};

/// Libraries opened so far in this process, by canonical path.
fn cache() -> &'static Mutex<HashMap<PathBuf, LoadedPlugin>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, LoadedPlugin>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads the plugin at `path`, or returns the one already loaded from the same file in this
/// process (libraries are never unloaded, so a second open would only map the same code).
/// Errors are those of [`nas_plugin_host::load_plugin`] ([`NasError::Plugin`]).
pub fn load_plugin_once(path: &Path) -> Result<LoadedPlugin> {
    let Ok(key) = std::fs::canonicalize(path) else {
        // Missing or unreadable: let the loader word the error.
        return load_plugin(path);
    };
    // The lock is held while loading, so that two runs of a parallel sweep that name the
    // same library open it once.
    let mut loaded = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = loaded.get(&key) {
        return Ok(p.clone());
    }
    let plugin = load_plugin(&key)?;
    loaded.insert(key, plugin.clone());
    Ok(plugin)
}

/// Where entry `index` of `exp.plugins` points: absolute paths as given; a relative path
/// joined to the directory of the file that wrote it, or left relative to the current
/// directory when it came from `--set` or the experiment was not read from a file.
pub fn plugin_path(exp: &Experiment, index: usize) -> Option<PathBuf> {
    let given = PathBuf::from(exp.plugins.get(index)?);
    if given.is_absolute() {
        return Some(given);
    }
    let key = ["plugins".to_string(), index.to_string()];
    let place = exp.source.map().and_then(|m| m.locate(&key, false));
    Some(match place {
        // A place with a line and column is a file (a `--set` has none).
        Some(p) if p.pos.is_some() => Path::new(&p.file)
            .parent()
            .unwrap_or(Path::new(""))
            .join(given),
        _ => given,
    })
}

/// Every entry of `exp.plugins`, resolved by [`plugin_path`].
pub fn plugin_paths(exp: &Experiment) -> Vec<PathBuf> {
    (0..exp.plugins.len())
        .filter_map(|i| plugin_path(exp, i))
        .collect()
}

/// `exp` with every `plugins` entry replaced by its resolved absolute path ([`plugin_path`];
/// a path relative to the current directory is joined to it, without resolving links).
/// A run records this in `config.resolved.yaml`, so that the run directory's config, and
/// `nas run --resume` from it, find the same libraries wherever it is read from. `exp`
/// itself when nothing changes.
pub fn with_absolute_plugins(exp: &Experiment) -> Cow<'_, Experiment> {
    let paths: Vec<String> = plugin_paths(exp)
        .into_iter()
        .map(|p| {
            std::path::absolute(&p)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    if paths == exp.plugins {
        return Cow::Borrowed(exp);
    }
    let mut e = exp.clone();
    e.plugins = paths;
    Cow::Owned(e)
}

/// Registers the strategy of `plugin` into `comps`. The same plugin file registered again
/// is skipped; any other name clash (a built-in, another plugin) is an error naming both
/// origins.
pub fn add_plugin(comps: &mut Components, plugin: &LoadedPlugin) -> Result<()> {
    if let Some(existing) = comps.strategies.info(plugin.name()) {
        if existing.origin == plugin.origin() {
            return Ok(());
        }
    }
    register_plugin_with(&mut comps.strategies, plugin, |f| {
        Arc::new(move |params: &serde_json::Value, _: &BuildContext<'_>| f.create(params))
    })
}

/// A copy of `comps` with the strategy plugins at `paths` loaded ([`load_plugin_once`]) and
/// registered ([`add_plugin`]). `comps` is left as it was; the copy shares its factories.
pub fn with_plugins(comps: &Components, paths: &[PathBuf]) -> Result<Components> {
    let mut c = comps.clone();
    for p in paths {
        add_plugin(&mut c, &load_plugin_once(p)?)?;
    }
    Ok(c)
}

/// The components a run of `exp` uses: `comps` itself when the experiment names no
/// plugins, else a copy with them registered. A failure names the `plugins.N` entry and
/// where it was written ([`NasError::Config`]).
pub fn components_for<'a>(exp: &Experiment, comps: &'a Components) -> Result<Cow<'a, Components>> {
    if exp.plugins.is_empty() {
        return Ok(Cow::Borrowed(comps));
    }
    let mut c = comps.clone();
    for (i, path) in plugin_paths(exp).iter().enumerate() {
        load_plugin_once(path)
            .and_then(|p| add_plugin(&mut c, &p))
            .map_err(|e| {
                let message = match e {
                    NasError::Plugin(m) => m,
                    other => other.to_string(),
                };
                exp.error_at(&format!("plugins.{i}"), message)
            })?;
    }
    Ok(Cow::Owned(c))
}
