//! `nas list` and `nas describe`: the registry, with the strategy plugins an experiment
//! names (`--config`) or given directly (`--plugin`) registered beside the built-ins.
use std::borrow::Cow;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nas_registry::Components;

/// Where `nas list` and `nas describe` find strategy plugins.
#[derive(Args, Debug, Default)]
pub struct PluginSource {
    /// Also list the strategy plugins this experiment file names in `plugins:` (paths
    /// relative to the file that wrote them, as a run resolves them).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides of the experiment file (`--set plugins=[...]`).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "config")]
    pub sets: Vec<String>,
    /// Also load this strategy plugin library (repeatable).
    #[arg(long = "plugin", value_name = "PATH")]
    pub plugins: Vec<PathBuf>,
}

impl PluginSource {
    /// `comps` with the named plugins registered (a copy), or `comps` itself when none is
    /// named. A plugin that does not load is a configuration error (exit code 2).
    pub fn components<'a>(&self, comps: &'a Components) -> Result<Cow<'a, Components>> {
        let mut c = Cow::Borrowed(comps);
        if let Some(config) = &self.config {
            let exp = nas_config::load_experiment(config, &self.sets)?;
            let loaded = match nas_runner::plugins::components_for(&exp, &c)? {
                Cow::Owned(o) => Some(o),
                Cow::Borrowed(_) => None,
            };
            if let Some(o) = loaded {
                c = Cow::Owned(o);
            }
        }
        if !self.plugins.is_empty() {
            let with = nas_runner::plugins::with_plugins(&c, &self.plugins).map_err(|e| {
                nas_core::NasError::Config {
                    file: "--plugin".into(),
                    location: None,
                    message: e.to_string(),
                }
            })?;
            c = Cow::Owned(with);
        }
        Ok(c)
    }
}

/// `nas list`: every registered component, grouped by kind.
pub fn list(src: &PluginSource, comps: &Components) -> Result<i32> {
    let comps = src.components(comps)?;
    let mut kind = None;
    for info in comps.all_infos() {
        if kind != Some(info.kind) {
            println!("{}:", info.kind.plural());
            kind = Some(info.kind);
        }
        println!("  {:<16} {}", info.name, info.summary);
    }
    Ok(0)
}

/// `nas describe NAME`: a component's origin, summary, params and defaults.
pub fn describe(name: &str, src: &PluginSource, comps: &Components) -> Result<i32> {
    let comps = src.components(comps)?;
    let found = comps.find(name);
    if found.is_empty() {
        let known: Vec<String> = comps.all_infos().iter().map(|i| i.name.clone()).collect();
        return Err(nas_core::NasError::UnknownComponent {
            kind: "component".into(),
            name: name.to_string(),
            known: known.join(", "),
        }
        .into());
    }
    for info in found {
        println!("{} `{}` ({})", info.kind, info.name, info.origin);
        println!("  {}", info.summary);
        println!("  params (defaults):");
        for p in &info.params {
            let d = info
                .defaults
                .get(&p.name)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into());
            println!("    {:<22} {:<28} {}", p.name, d, p.doc);
        }
    }
    Ok(0)
}
