//! `nas zero-cost CONFIG --sample N`: scores uniformly drawn architectures of the config's
//! space with every zero-cost proxy (NASWOT, synflow, grad_norm) and, on NAS-Bench-201 with
//! its table, prints each proxy's Spearman rank correlation with the benchmark's accuracy.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nas_registry::Components;
use nas_runner::zero_cost::{proxy_study, spearman, Proxy};

/// Arguments of `nas zero-cost`.
#[derive(Args, Debug, Clone)]
pub struct ZeroCostArgs {
    /// Experiment YAML (its space, data, device and seed).
    pub config: PathBuf,
    /// Overrides.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Architectures to draw.
    #[arg(long, default_value_t = 50)]
    pub sample: usize,
    /// Examples of the scoring minibatch (NASWOT reference: 128).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Write every architecture's scores here (CSV).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `nas zero-cost`: exit code 0.
pub fn zero_cost(a: &ZeroCostArgs, comps: &Components) -> Result<i32> {
    let exp = nas_config::load_experiment(&a.config, &a.sets)?;
    let rows = proxy_study(&exp, comps, a.sample, a.batch_size)?;
    if let Some(out) = &a.out {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["arch".to_string()];
        header.extend(Proxy::ALL.iter().map(|p| p.name().to_string()));
        header.push("table_test_acc".into());
        w.write_record(&header)?;
        for r in &rows {
            let mut rec = vec![r.arch.clone()];
            rec.extend(r.scores.iter().map(|s| s.to_string()));
            rec.push(r.table_test_acc.map_or(String::new(), |v| v.to_string()));
            w.write_record(&rec)?;
        }
        nas_rundir::files::write_atomic(out, &w.into_inner()?)?;
        println!("wrote {}", out.display());
    }
    let acc: Vec<f64> = rows
        .iter()
        .map(|r| r.table_test_acc.unwrap_or(f64::NAN))
        .collect();
    println!("{} architectures of space `{}`", rows.len(), exp.space.name);
    for (i, p) in Proxy::ALL.iter().enumerate() {
        let s: Vec<f64> = rows.iter().map(|r| r.scores[i]).collect();
        match spearman(&s, &acc) {
            Some(rho) => println!(
                "{:<10} Spearman rho with the table's test accuracy: {rho:.3}",
                p.name()
            ),
            None => println!("{:<10} (no table accuracy to correlate with)", p.name()),
        }
    }
    Ok(0)
}
