//! The command implementations.
use std::path::{Path, PathBuf};

use anyhow::Result;
use nas_model::NetworkConfig;
use nas_registry::Components;
use nas_runner::RetrainOptions;

use crate::{Cli, Command, ConfigAction};

/// Runs one command; returns the exit code.
pub fn dispatch(cli: &Cli, comps: &Components) -> Result<i32> {
    // `--device` is one more override, after the command's own `--set`s.
    let with_device = |sets: &[String]| -> Vec<String> {
        let mut all = sets.to_vec();
        all.extend(cli.device.map(|d| format!("device={d}")));
        all
    };
    match &cli.command {
        Command::Run {
            config,
            sets,
            out,
            resume,
        } => crate::run_cmd::run(
            cli,
            comps,
            config.as_deref(),
            &with_device(sets),
            out.as_deref(),
            resume.as_deref(),
        ),
        Command::Train {
            arch,
            config,
            sets,
            out,
            resume,
        } => train(comps, arch, config, &with_device(sets), out, *resume),
        Command::Inspect {
            arch,
            config,
            sets,
            json,
            shape,
        } => inspect(comps, arch, config, &with_device(sets), *json, shape),
        Command::Sweep(a) => {
            let a = crate::SweepArgs {
                sets: with_device(&a.sets),
                ..a.clone()
            };
            crate::sweep_cmd::sweep(cli, &a, comps)
        }
        Command::Report(a) => crate::sweep_cmd::report(a, comps),
        Command::Plugin(a) => crate::plugin_cmd::plugin(a, comps),
        Command::Derive(a) => crate::derive_cmd::derive(a, comps),
        Command::Family(a) => {
            let a = crate::FamilyArgs {
                sets: with_device(&a.sets),
                ..a.clone()
            };
            crate::family_cmd::family(&a, comps)
        }
        Command::Latency(a) => {
            let a = crate::LatencyArgs {
                sets: with_device(&a.sets),
                ..a.clone()
            };
            crate::latency_cmd::latency(&a, comps)
        }
        Command::Export(a) => crate::export_cmd::export(a, cli.device, comps),
        Command::ZeroCost(a) => {
            let a = crate::ZeroCostArgs {
                sets: with_device(&a.sets),
                ..a.clone()
            };
            crate::zero_cost_cmd::zero_cost(&a, comps)
        }
        Command::List(src) => crate::list_cmd::list(src, comps),
        Command::Describe { name, plugins } => crate::list_cmd::describe(name, plugins, comps),
        Command::Config {
            action:
                ConfigAction::Validate {
                    config,
                    sets,
                    print,
                },
        } => validate(comps, config, &with_device(sets), *print),
        Command::Bench {
            layers,
            channels,
            batch,
            size,
            steps,
            order,
            strategy,
            profile,
            json,
        } => bench(
            comps,
            nas_runner::bench::BenchConfig {
                layers: *layers,
                channels: *channels,
                batch: *batch,
                size: *size,
                steps: *steps,
                order: (*order).into(),
                strategy: strategy.clone(),
                profile: *profile,
                device: cli.device.unwrap_or_default(),
            },
            *json,
        ),
    }
}

/// `nas train`: retrains an architecture from scratch.
fn train(
    comps: &Components,
    arch: &str,
    config: &Path,
    sets: &[String],
    out: &Option<PathBuf>,
    resume: bool,
) -> Result<i32> {
    let exp = nas_config::load_experiment(config, sets)?;
    // A wrong architecture is a usage error, found before any data is loaded.
    let shape = nas_registry::data_shape_of(&exp, comps)?;
    let space = nas_registry::build_space(&exp, comps, shape)?;
    crate::arch_arg::read(arch, &exp.space.name, space.rules())?;
    let opts = RetrainOptions {
        out_dir: out.clone(),
    };
    let rep = if resume {
        let (start, rep) = nas_runner::retrain_resumable(&exp, comps, arch, &opts)?;
        if start == nas_runner::RetrainStart::Skipped {
            println!("finished before: nothing to train");
        }
        rep
    } else {
        nas_runner::retrain(&exp, comps, arch, &opts)?
    };
    println!("params: {}", rep.params);
    println!("test_acc: {:.4}", rep.test_acc);
    Ok(0)
}

/// `nas inspect`: an architecture's notation, network and costs.
fn inspect(
    comps: &Components,
    arch: &str,
    config: &Path,
    sets: &[String],
    json: bool,
    shape: &crate::ShapeArgs,
) -> Result<i32> {
    let exp = nas_config::load_experiment(config, sets)?;
    let shape = shape.shape_of(&exp, comps)?;
    let space = nas_registry::build_space(&exp, comps, shape)?;
    let rules = space.rules();
    let a = crate::arch_arg::read(arch, &exp.space.name, rules)?;
    let (params, flops, cfg) = match space.tensor() {
        Some(ts) => {
            let cfg = match &exp.train {
                Some(t) => NetworkConfig {
                    channels: t.channels,
                    layers: t.layers,
                    auxiliary: false,
                },
                None => ts.default_network_config(),
            };
            let c = ts.network_cost(&a, &cfg)?;
            (c.params, c.flops, Some(cfg))
        }
        None => {
            let c = rules.spec().cost_of(&a)?;
            (c.params, c.flops, None)
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"params": nas_rundir::files::count_json(params),
                "flops": nas_rundir::files::count_json(flops),
                "architecture": rules.format_arch(&a), "network": cfg})
        );
    } else {
        println!("architecture: {}", rules.format_arch(&a));
        if let Some(c) = cfg {
            println!("network: {} channels, {} cells", c.channels, c.layers);
        }
        println!(
            "params: {params} ({:.2}M, auxiliary head excluded)",
            params / 1e6
        );
        println!(
            "flops: {flops} ({:.1}M multiply-adds per example)",
            flops / 1e6
        );
    }
    Ok(0)
}

/// `nas config validate`: every check `nas run` makes before it trains.
fn validate(comps: &Components, config: &Path, sets: &[String], print: bool) -> Result<i32> {
    let exp = nas_config::load_experiment(config, sets)?;
    // A device this build cannot use fails here, as it would in `nas run`.
    nas_registry::experiment_device(&exp)?;
    // Decode every component's params too, so that a bad params block fails here.
    let shape = nas_registry::data_shape_of(&exp, comps)?;
    let space = nas_registry::build_space(&exp, comps, shape)?;
    // The experiment's plugins are loaded first: their strategies are checked too.
    let with_plugins = nas_runner::plugins::components_for(&exp, comps)?;
    let mut strategy = nas_registry::build_strategy(&exp, &with_plugins)?;
    // Set up on the space too, so that what depends on it (a cost term's latency
    // table) fails here rather than at run time.
    strategy.init(space.rules().spec(), 0)?;
    nas_registry::check_trainer(&exp, comps)?;
    nas_registry::weight_optimizer(&exp, comps, &exp.optimizers.weights, "optimizers.weights")?;
    if print {
        print!("{}", nas_config::to_yaml(&exp)?);
    }
    println!("{}: ok", config.display());
    Ok(0)
}

/// `nas bench`: times search steps.
fn bench(comps: &Components, cfg: nas_runner::bench::BenchConfig, json: bool) -> Result<i32> {
    let r = nas_runner::bench::bench_darts(&cfg, comps)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let what = if cfg.strategy == "retrain" {
            "DARTS_V2 retraining step".to_string()
        } else {
            format!("{} search step ({} order)", cfg.strategy, cfg.order)
        };
        println!(
            "{what}, {} cells x {} channels, batch {}, {}x{}x3: {:.1} ms/step over {} steps (peak RSS {} MiB, {} threads)",
            cfg.layers,
            cfg.channels,
            cfg.batch,
            cfg.size,
            cfg.size,
            r.ms_per_step,
            cfg.steps,
            r.peak_rss_mib.map_or("?".into(), |m| format!("{m:.0}")),
            r.threads
        );
        if let Some(m) = r.gpu_peak_mib {
            println!("peak GPU memory held by candle's buffers: {m:.0} MiB");
        }
        if let Some(l) = r.gpu_kernel_launches_per_step {
            println!("nas-ops kernel launches per step: {l:.0} (candle's own kernels not counted)");
        }
        if let Some(rows) = &r.profile {
            println!(
                "{:<44} {:>10} {:>12}",
                "kernel or phase", "calls/step", "ms/step"
            );
            for row in rows {
                println!(
                    "{:<44} {:>10.1} {:>12.1}",
                    row.name, row.calls_per_step, row.ms_per_step
                );
            }
        }
    }
    Ok(0)
}
