//! Putting a loaded plugin into the one strategy registry that also holds the built-ins
//! (DESIGN.md section 3). The registry's factory type belongs to the runner, so the
//! functions here are generic over it.
use std::path::Path;

use nas_core::{NasError, Registry, Result, SearchStrategy};

use crate::load::{load_plugin, LoadedPlugin};

/// The usual shape of a strategy factory in a registry: params in, strategy out.
pub type BoxedStrategyFactory =
    Box<dyn Fn(&serde_json::Value) -> Result<Box<dyn SearchStrategy>> + Send + Sync>;

/// Makes instances of one loaded plugin. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct PluginFactory {
    plugin: LoadedPlugin,
}

impl PluginFactory {
    /// A factory for `plugin`.
    pub fn new(plugin: LoadedPlugin) -> Self {
        PluginFactory { plugin }
    }

    /// Makes a strategy from `params` (`null` = all defaults).
    pub fn create(&self, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
        self.plugin.create(params)
    }

    /// The plugin behind it.
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }
}

impl From<PluginFactory> for BoxedStrategyFactory {
    fn from(f: PluginFactory) -> Self {
        Box::new(move |params| f.create(params))
    }
}

impl From<PluginFactory>
    for std::sync::Arc<dyn Fn(&serde_json::Value) -> Result<Box<dyn SearchStrategy>> + Send + Sync>
{
    fn from(f: PluginFactory) -> Self {
        std::sync::Arc::new(move |params| f.create(params))
    }
}

/// Registers `plugin` into `registry`, wrapping its [`PluginFactory`] with `wrap` into the
/// registry's own factory type. The entry's [`nas_core::ComponentInfo`] carries the
/// plugin's name, summary, params and defaults, with `origin` = the library path.
///
/// A name that is already registered (a built-in or another plugin) is a
/// [`NasError::Plugin`] error that names both origins.
pub fn register_plugin_with<F>(
    registry: &mut Registry<F>,
    plugin: &LoadedPlugin,
    wrap: impl FnOnce(PluginFactory) -> F,
) -> Result<()> {
    if let Some(existing) = registry.info(plugin.name()) {
        return Err(NasError::Plugin(format!(
            "plugin `{}` declares the strategy `{}`, which is already registered (from {}); \
             rename the plugin's strategy or leave one of them out",
            plugin.origin(),
            plugin.name(),
            existing.origin
        )));
    }
    registry.register(plugin.component_info(), wrap(plugin.factory()))
}

/// [`register_plugin_with`] for registries whose factory type converts from
/// [`PluginFactory`] (such as [`BoxedStrategyFactory`]).
pub fn register_plugin<F: From<PluginFactory>>(
    registry: &mut Registry<F>,
    plugin: &LoadedPlugin,
) -> Result<()> {
    register_plugin_with(registry, plugin, F::from)
}

/// Loads the plugin at `path` and registers it; returns it for `nas plugin info`-style
/// reporting.
pub fn load_and_register<F: From<PluginFactory>>(
    registry: &mut Registry<F>,
    path: impl AsRef<Path>,
) -> Result<LoadedPlugin> {
    let plugin = load_plugin(path)?;
    register_plugin(registry, &plugin)?;
    Ok(plugin)
}
