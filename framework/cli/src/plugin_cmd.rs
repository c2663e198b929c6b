//! `nas plugin info PATH` and `nas plugin new NAME`.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nas_plugin_host::{load_plugin, PluginInfo};
use nas_plugin_sdk::info::{CORE_VERSION, RUSTC_VERSION, SDK_VERSION};
use nas_plugin_sdk::{ABI_VERSION, PROTOCOL_VERSION};
use nas_registry::Components;

/// Arguments of `nas plugin`.
#[derive(Args, Debug)]
pub struct PluginArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: PluginAction,
}

/// `nas plugin ...`.
#[derive(Subcommand, Debug)]
pub enum PluginAction {
    /// Load a strategy plugin and print what it declares, with its versions next to the
    /// host's.
    Info {
        /// The plugin library (e.g. target/release/libmy_strategy.so).
        path: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a ready-to-build strategy plugin crate into DIR/NAME.
    New {
        /// Strategy name (letters, digits, `_`, `-`; starts with a letter). The crate is
        /// called NAME; the strategy NAME with `-` turned into `_`.
        name: String,
        /// Directory to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The nas source tree to depend on by path (default: the tree this binary was
        /// built from, when it still exists; else the published crates by version).
        #[arg(long, value_name = "DIR", conflicts_with = "registry")]
        nas_path: Option<PathBuf>,
        /// Depend on the published `nas-core` and `nas-plugin-sdk` by version.
        #[arg(long)]
        registry: bool,
    },
}

/// Runs `nas plugin ...`; returns the exit code.
pub fn plugin(a: &PluginArgs, comps: &Components) -> Result<i32> {
    match &a.action {
        PluginAction::Info { path, json } => info(path, *json, comps),
        PluginAction::New {
            name,
            dir,
            nas_path,
            registry,
        } => {
            let deps = if *registry {
                Deps::Registry
            } else {
                match nas_path {
                    Some(p) => Deps::Path(p.clone()),
                    None => built_from().map_or(Deps::Registry, Deps::Path),
                }
            };
            let crate_dir = new_crate(name, dir, &deps)?;
            println!("wrote {}", crate_dir.display());
            println!(
                "next: cd {} && cargo build --release, then name target/release/{} under \
                 `plugins:` in an experiment and use `strategy: {{name: {}}}`",
                crate_dir.display(),
                lib_file(name),
                strategy_name(name)
            );
            Ok(0)
        }
    }
}

/// The host's side of the version table.
fn host_versions() -> [(&'static str, String); 5] {
    [
        ("abi_version", ABI_VERSION.to_string()),
        ("protocol_version", PROTOCOL_VERSION.to_string()),
        ("nas-plugin-sdk", SDK_VERSION.to_string()),
        ("nas-core", CORE_VERSION.to_string()),
        ("rustc", RUSTC_VERSION.to_string()),
    ]
}

/// The plugin's side of the version table, in [`host_versions`] order.
fn plugin_versions(i: &PluginInfo) -> [String; 5] {
    [
        i.abi_version.to_string(),
        i.protocol_version.to_string(),
        i.sdk_version.clone(),
        i.core_version.clone(),
        i.rustc_version.clone(),
    ]
}

/// `nas plugin info`: exit 0 when the plugin loads, 2 when it does not (the loader's
/// message, with the host-vs-plugin table on a version mismatch, goes to stderr).
fn info(path: &Path, json: bool, comps: &Components) -> Result<i32> {
    let plugin = match load_plugin(path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let i = plugin.info();
    let clash = comps
        .strategies
        .info(&i.name)
        .map(|existing| existing.origin.clone());
    if json {
        let host: serde_json::Map<String, serde_json::Value> = host_versions()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        let out = serde_json::json!({
            "path": plugin.origin(),
            "info": i,
            "host": host,
            "clashes_with": clash,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!("plugin    {}", plugin.origin());
    println!("{i}");
    println!();
    let rows: Vec<(&str, String, String)> = host_versions()
        .into_iter()
        .zip(plugin_versions(i))
        .map(|((k, h), p)| (k, h, p))
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(4);
    println!("  {:w0$}  {:w1$}  plugin", "", "host");
    for (k, h, p) in &rows {
        println!("  {k:w0$}  {h:w1$}  {p}");
    }
    println!("fits this host: yes (ABI and protocol agree)");
    if let Some(origin) = clash {
        println!(
            "note: a strategy named `{}` is already registered ({origin}); an experiment \
             cannot load this plugin beside it",
            i.name
        );
    }
    Ok(0)
}

/// Where the generated crate gets `nas-core` and `nas-plugin-sdk`.
#[derive(Debug, Clone, PartialEq)]
enum Deps {
    /// A nas source tree (the workspace root).
    Path(PathBuf),
    /// The published crates, at this binary's version.
    Registry,
}

/// The nas source tree this binary was built from, when it still exists.
fn built_from() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = std::fs::canonicalize(root).ok()?;
    root.join("framework/plugin-sdk/Cargo.toml")
        .is_file()
        .then_some(root)
}

/// The strategy name a crate name registers (`my-search` -> `my_search`).
fn strategy_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The file name of the built library on this platform.
fn lib_file(name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        strategy_name(name),
        std::env::consts::DLL_SUFFIX
    )
}

/// Checks a crate / strategy name.
fn check_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        anyhow::bail!(nas_core::NasError::Config {
            file: "nas plugin new".into(),
            location: Some("NAME".into()),
            message: format!(
                "`{name}` is not a usable name: use letters, digits, `_` and `-`, starting with \
                 a letter"
            ),
        });
    }
    Ok(())
}

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The generated `Cargo.toml`.
fn cargo_toml(name: &str, deps: &Deps) -> String {
    let (core, sdk) = match deps {
        Deps::Path(root) => (
            format!(
                "{{ path = {} }}",
                toml_str(&root.join("framework/core").display().to_string())
            ),
            format!(
                "{{ path = {} }}",
                toml_str(&root.join("framework/plugin-sdk").display().to_string())
            ),
        ),
        Deps::Registry => (
            format!("\"={CORE_VERSION}\""),
            format!("\"={SDK_VERSION}\""),
        ),
    };
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# `cdylib`: the shared library that `nas` loads. `rlib`: lets tests link the strategy.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The same nas-plugin-sdk release as the `nas` that loads the plugin (it checks).
nas-core = {core}
nas-plugin-sdk = {sdk}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A workspace of its own, even when created inside another one.
[workspace]
"#
    )
}

/// Fills the `{{...}}` slots of a template.
fn fill(template: &str, name: &str) -> String {
    template
        .replace("{{crate}}", name)
        .replace("{{name}}", &strategy_name(name))
        .replace("{{lib_file}}", &lib_file(name))
        .replace("{{sdk_version}}", SDK_VERSION)
}

/// Writes the crate `dir/name`; refuses to write into a non-empty directory.
fn new_crate(name: &str, dir: &Path, deps: &Deps) -> Result<PathBuf> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists()
        && std::fs::read_dir(&root)
            .with_context(|| format!("reading {}", root.display()))?
            .next()
            .is_some()
    {
        anyhow::bail!(nas_core::NasError::Config {
            file: "nas plugin new".into(),
            location: Some("--dir".into()),
            message: format!(
                "{} exists and is not empty; choose another NAME or --dir",
                root.display()
            ),
        });
    }
    let files = [
        ("Cargo.toml", cargo_toml(name, deps)),
        (
            "src/lib.rs",
            fill(include_str!("../templates/plugin/lib.rs"), name),
        ),
        (
            "README.md",
            fill(include_str!("../templates/plugin/README.md"), name),
        ),
        (".gitignore", "/target\n".to_string()),
    ];
    for (rel, body) in files {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| nas_core::NasError::io(parent, e))?;
        }
        std::fs::write(&p, body).map_err(|e| nas_core::NasError::io(&p, e))?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_mapped() {
        assert!(check_name("my-search_2").is_ok());
        for bad in ["", "2fast", "my search", "a/b", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(strategy_name("my-search"), "my_search");
        assert!(lib_file("my-search").contains("my_search"));
    }

    #[test]
    fn the_manifest_names_both_kinds_of_dependency() {
        let p = cargo_toml("x", &Deps::Path(PathBuf::from("/src/nas")));
        assert!(
            p.contains(r#"nas-core = { path = "/src/nas/framework/core" }"#),
            "{p}"
        );
        assert!(
            p.contains(r#"nas-plugin-sdk = { path = "/src/nas/framework/plugin-sdk" }"#),
            "{p}"
        );
        let r = cargo_toml("x", &Deps::Registry);
        assert!(
            r.contains(&format!("nas-plugin-sdk = \"={SDK_VERSION}\"")),
            "{r}"
        );
        assert!(r.contains("crate-type = [\"cdylib\", \"rlib\"]"), "{r}");
    }

    #[test]
    fn templates_have_no_unfilled_slots() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_crate("my-walk", dir.path(), &Deps::Registry).unwrap();
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(
            lib.contains("\"my_walk\""),
            "strategy name in the macro line"
        );
        assert!(lib.contains("export_strategy!"));
        for f in ["src/lib.rs", "README.md", "Cargo.toml"] {
            let t = std::fs::read_to_string(root.join(f)).unwrap();
            assert!(!t.contains("{{"), "{f} has an unfilled slot");
        }
        // A second `new` into the same place is refused.
        assert!(new_crate("my-walk", dir.path(), &Deps::Registry).is_err());
    }
}
