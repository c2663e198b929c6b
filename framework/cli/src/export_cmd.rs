//! `nas export RUN --inherit`: the found network with weights inherited from the run's
//! trained supernet (single-path spaces; see `nas_runner::export`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nas_core::NasError;
use nas_registry::Components;
use nas_runner::export::{export_inherited, InheritOptions};

/// Arguments of `nas export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A finished (or checkpointed) single-path search run directory.
    pub run: PathBuf,
    /// Take the network's weights from the run's supernet, recalibrate its batch norms on
    /// training data (SPOS) and score it on the test split.
    #[arg(long)]
    pub inherit: bool,
    /// Architecture (a file or the space's notation); default RUN/architecture.json.
    #[arg(long)]
    pub arch: Option<String>,
    /// Output directory (default RUN/inherited).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `nas export`: exit code 0 with the network written.
pub fn export(
    a: &ExportArgs,
    device: Option<nas_config::DeviceSetting>,
    comps: &Components,
) -> Result<i32> {
    if !a.inherit {
        anyhow::bail!(NasError::Config {
            file: a.run.display().to_string(),
            location: Some("--inherit".into()),
            message: "`nas export` writes a network with weights inherited from the run's \
                      supernet: add --inherit (the architecture alone is RUN/architecture.json)"
                .into(),
        });
    }
    let opts = InheritOptions {
        arch: a.arch.clone(),
        out_dir: a.out.clone(),
        device,
    };
    let r = export_inherited(&a.run, comps, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("architecture: {}", r.architecture);
        println!(
            "params: {} ({} tensors inherited, {} batch-norm affine tensors at 1 and 0)",
            r.params as u64, r.inherited, r.initialised
        );
        println!(
            "test_acc: {:.4} (inherited weights, batch norms recalibrated; {} examples)",
            r.test_acc, r.test_samples
        );
        println!("written to {}", r.dir.display());
    }
    Ok(0)
}
