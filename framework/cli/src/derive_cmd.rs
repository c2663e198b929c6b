//! `nas derive RUN_DIR --t 0,0.25,0.5,0.75,1 --mode simple|darts [--json]`: the family of
//! architectures of a finished DARTS-CC run, one per complexity `t`, read from its
//! `strategy_state.json` (the hypernetwork) and `config.resolved.yaml` (the space).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nas_darts_cc_family::derive_family;
use nas_registry::Components;
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

/// Writes `derive-<mode>-t<t>.json` (and the DARTS-CC JSON form, `.darts-cc.json`, for cell
/// spaces) per `t` into the run directory and prints the family.
pub fn derive(a: &DeriveArgs, comps: &Components) -> Result<i32> {
    let fam = derive_family(&a.run_dir, &a.t, &a.mode, comps)?;
    if a.json {
        let rows: Vec<_> = fam
            .members
            .iter()
            .map(|m| {
                json!({
                    "t": m.t,
                    "lambda": m.lambda,
                    "params": nas_rundir::files::count_json(m.params),
                    "flops": nas_rundir::files::count_json(m.flops),
                    "architecture": m.notation,
                    "choices": m.arch.choices,
                    "darts_cc": m.darts_cc,
                    "file": m.file.display().to_string(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        if let Some(c) = fam.network {
            println!(
                "family of {} ({} mode; parameters of the {}-channel, {}-cell network):",
                a.run_dir.display(),
                a.mode,
                c.channels,
                c.layers
            );
        }
        for m in &fam.members {
            println!(
                "t={:<5} lambda={:.3e} params={:<9} {}",
                m.t, m.lambda, m.params, m.notation
            );
            println!("        -> {}", m.file.display());
        }
    }
    Ok(0)
}
