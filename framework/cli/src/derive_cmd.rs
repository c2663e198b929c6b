//! `nas derive RUN_DIR --t 0,0.25,0.5,0.75,1 --mode simple|darts [--json]`: the family of
//! architectures of a finished DARTS-CC run, one per complexity `t`, read from its
//! `strategy_state.json` (the hypernetwork) and `config.resolved.yaml` (the space).
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use nas_core::NasError;
use nas_model::NetworkConfig;
use nas_runner::Components;
use nas_strategy_darts_cc::{darts_cc_json, family, SavedHypernet};
use serde_json::json;

/// Arguments of `nas derive`.
#[derive(Args, Debug)]
pub struct DeriveArgs {
    /// A finished DARTS-CC run directory (`config.resolved.yaml`, `strategy_state.json`).
    pub run_dir: PathBuf,
    /// Normalised complexities in [0, 1], comma separated (t = 0: lambda = 10^L_min).
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,1")]
    pub t: Vec<f64>,
    /// Derivation rule of the space: `darts` (top-2 non-none edges per node) or `simple`
    /// (argmax over all ops including none, so the size can change).
    #[arg(long, default_value = "darts")]
    pub mode: String,
    /// Print a JSON array of objects with `t`, `lambda`, `params`, `architecture`.
    #[arg(long)]
    pub json: bool,
}

fn usage(file: &Path, message: String) -> anyhow::Error {
    NasError::Config {
        file: file.display().to_string(),
        location: None,
        message,
    }
    .into()
}

/// Writes `derive-<mode>-t<t>.json` (and the DARTS-CC JSON form, `.darts-cc.json`, for cell
/// spaces) per `t` into the run directory and prints the family.
pub fn derive(a: &DeriveArgs, comps: &Components) -> Result<i32> {
    let dir = &a.run_dir;
    let cfg_path = dir.join("config.resolved.yaml");
    if !cfg_path.is_file() {
        return Err(usage(
            dir,
            "not a run directory: it has no config.resolved.yaml".into(),
        ));
    }
    let exp = nas_config::load_experiment(&cfg_path, &[])?;
    if exp.strategy.name != "darts_cc" {
        return Err(usage(
            &cfg_path,
            format!(
                "`nas derive` extracts the family of a darts_cc run; this run used strategy `{}`",
                exp.strategy.name
            ),
        ));
    }
    if let Some(bad) = a.t.iter().find(|t| !(0.0..=1.0).contains(*t)) {
        return Err(usage(Path::new("--t"), format!("{bad} is outside [0, 1]")));
    }
    let state_path = dir.join("strategy_state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| {
        NasError::Other(format!(
            "{}: {e} (it is written when a run finishes)",
            state_path.display()
        ))
    })?;
    let state: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| NasError::Other(format!("{}: {e}", state_path.display())))?;
    let saved = SavedHypernet::from_state(&state)?;
    let data = nas_runner::run::load_data(&exp)?;
    let shape = nas_runner::run::data_shape(data.as_ref());
    let space = nas_runner::run::build_space(&exp, comps, shape)?;
    let rules = space.rules();
    let members = family(&saved, &a.t, rules, &a.mode)?;
    let network = space.tensor().map(|ts| match &exp.train {
        Some(t) => NetworkConfig {
            channels: t.channels,
            layers: t.layers,
            auxiliary: false,
        },
        None => ts.default_network_config(),
    });
    let mut rows = Vec::with_capacity(members.len());
    for m in &members {
        let cost = match (space.tensor(), &network) {
            (Some(ts), Some(cfg)) => ts.network_cost(&m.arch, cfg)?,
            _ => rules.spec().cost_of(&m.arch)?,
        };
        let notation = rules.format_arch(&m.arch);
        let reference = darts_cc_json(rules.spec(), &m.arch).ok();
        let stem = format!("derive-{}-t{}", a.mode, m.t);
        let mut file = json!({
            "space": exp.space.name,
            "t": m.t,
            "lambda": m.lambda,
            "mode": a.mode,
            "architecture": m.arch,
            "notation": notation,
            "params": cost.params,
            "flops": cost.flops,
            "network": network,
            "weights": m.weights.0,
        });
        if exp.space.name == "darts" {
            file["genotype"] = json!(notation);
        }
        if let Some(r) = &reference {
            file["darts_cc"] = r.clone();
            nas_runner::files::write_json(&dir.join(format!("{stem}.darts-cc.json")), r)?;
        }
        let path = dir.join(format!("{stem}.json"));
        nas_runner::files::write_json(&path, &file)?;
        rows.push(json!({
            "t": m.t,
            "lambda": m.lambda,
            "params": cost.params,
            "flops": cost.flops,
            "architecture": notation,
            "choices": m.arch.choices,
            "darts_cc": reference,
            "file": path.display().to_string(),
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        if let Some(c) = network {
            println!(
                "family of {} ({} mode; parameters of the {}-channel, {}-cell network):",
                dir.display(),
                a.mode,
                c.channels,
                c.layers
            );
        }
        for r in &rows {
            println!(
                "t={:<5} lambda={:.3e} params={:<9} {}",
                r["t"],
                r["lambda"].as_f64().unwrap_or(f64::NAN),
                r["params"],
                r["architecture"].as_str().unwrap_or_default()
            );
            println!("        -> {}", r["file"].as_str().unwrap_or_default());
        }
    }
    Ok(0)
}
