//! `nas latency CONFIG`: measures the per-option latency table of a single-path space on
//! this machine and saves it where `space.params.latency_table` can load it.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nas_core::NasError;
use nas_registry::Components;

/// Arguments of `nas latency`.
#[derive(Args, Debug, Clone)]
pub struct LatencyArgs {
    /// Experiment YAML (its space, data shape and `device`).
    pub config: PathBuf,
    /// Overrides: `--set space.params.variant=imagenet`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Output JSON (default `latency-<space>-<device>.json`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Examples per timed forward pass (FBNet times batch 1 on the target device).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed passes per option (after one warm-up); the median is kept.
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
    /// Input shape and classes to time the blocks at (`--input 3x224x224 --classes 1000`).
    #[command(flatten)]
    pub shape: crate::shape_arg::ShapeArgs,
}

/// `nas latency`: exit code 0 with the table written, 2 for a space without option blocks.
pub fn latency(a: &LatencyArgs, comps: &Components) -> Result<i32> {
    if a.batch == 0 || a.repeats == 0 {
        anyhow::bail!(NasError::Config {
            file: if a.batch == 0 { "--batch" } else { "--repeats" }.into(),
            location: None,
            message: "must be at least 1".into(),
        });
    }
    let exp = nas_config::load_experiment(&a.config, &a.sets)?;
    let shape = a.shape.shape_of(&exp, comps)?;
    let space = nas_registry::build_space(&exp, comps, shape)?;
    let device = nas_registry::experiment_device(&exp)?;
    let not_timed = || {
        exp.error_at(
            "space.name",
            format!(
                "space `{}` has no per-option blocks to time (latency tables are for the \
                 single-path spaces: spos, proxyless, fbnet)",
                exp.space.name
            ),
        )
    };
    let ts = space.tensor().ok_or_else(not_timed)?;
    let table = ts
        .measure_latency_table(&device, a.batch, a.repeats)?
        .ok_or_else(not_timed)?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "latency-{}-{}.json",
            exp.space.name,
            exp.device.to_string().replace([':', '/'], "_")
        ))
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| NasError::io(dir, e))?;
    }
    nas_rundir::files::write_json(&out, &table)?;
    let keys = table["keys"].as_array().cloned().unwrap_or_default();
    let ops = table["ops"].as_array().cloned().unwrap_or_default();
    let ms = table["latency_ms"].as_array().cloned().unwrap_or_default();
    println!(
        "latency (ms, median of {} passes of batch {}) on {}:",
        a.repeats, a.batch, exp.device
    );
    for ((k, o), m) in keys.iter().zip(&ops).zip(&ms) {
        let cells: Vec<String> = o
            .as_array()
            .into_iter()
            .flatten()
            .zip(m.as_array().into_iter().flatten())
            .map(|(name, v)| {
                format!(
                    "{}={:.3}",
                    name.as_str().unwrap_or("?"),
                    v.as_f64().unwrap_or(f64::NAN)
                )
            })
            .collect();
        println!("  {:<12} {}", k.as_str().unwrap_or("?"), cells.join(" "));
    }
    println!(
        "  fixed (stem, tail, classifier): {:.3}",
        table["fixed_ms"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "wrote {} (use it with --set space.params.latency_table={})",
        out.display(),
        out.display()
    );
    Ok(0)
}
