//! # nas-cli
//!
//! The `nas` command line. A user who adds spaces, strategies, estimators, weight
//! optimizers, schedules or data sets of their own writes a few-line `main` that calls
//! [`main_with`] with a registration function (`Components::{spaces, strategies,
//! estimators, optimizers, schedules, datasets}.register`); configs then name them like the
//! built-ins. (Trainers stay the built-in `supernet`; a strategy's own architecture
//! optimizer is built by the strategy from the built-in optimizers.)
//!
//! Exit codes: 0 success, 1 a run failed, 2 usage or config error.
#![deny(missing_docs)]

mod arch_arg;
mod commands;
mod derive_cmd;
mod export_cmd;
mod family_cmd;
mod latency_cmd;
mod list_cmd;
mod memory;
mod plugin_cmd;
mod run_cmd;
mod shape_arg;
mod sweep_cmd;
mod threads;
mod zero_cost_cmd;

pub use derive_cmd::DeriveArgs;
pub use export_cmd::ExportArgs;
pub use family_cmd::FamilyArgs;
pub use latency_cmd::LatencyArgs;
pub use list_cmd::PluginSource;
pub use plugin_cmd::{PluginAction, PluginArgs};
pub use shape_arg::ShapeArgs;
pub use sweep_cmd::{ReportArgs, SweepArgs};
pub use zero_cost_cmd::ZeroCostArgs;

use clap::{Parser, Subcommand};
use nas_core::NasError;
use nas_registry::Components;

/// Command line of `nas`.
#[derive(Parser, Debug)]
#[command(
    name = "nas",
    version,
    about = "Neural architecture search: DARTS and friends, from YAML"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Colour of the log on stderr (NO_COLOR is honoured by `auto`).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// Where commands that compute run: `auto`, `cpu`, `cuda` or `cuda:N`. Overrides the
    /// experiment's `device` key (as `--set device=...`); `auto` takes a GPU when this binary
    /// has CUDA and one is present (docs/gpu.md). Default: the experiment's, else `cpu`.
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<nas_config::DeviceSetting>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a search from an experiment file, or continue a stopped run (`--resume DIR`).
    Run {
        /// Experiment YAML (not with `--resume`).
        #[arg(required_unless_present = "resume")]
        config: Option<std::path::PathBuf>,
        /// Override a key: `--set budget.epochs=3` (value parsed as YAML). With `--resume`,
        /// only the learning rates, clipping, `trainer.params.on_non_finite` and `output`
        /// may change.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run directory.
        #[arg(long, conflicts_with = "resume")]
        out: Option<std::path::PathBuf>,
        /// Continue the run in this directory from its last checkpoint.
        #[arg(long, value_name = "DIR", conflicts_with = "config")]
        resume: Option<std::path::PathBuf>,
    },
    /// Retrain an architecture from scratch (DARTS evaluation recipe by default).
    Train {
        /// Architecture: a file (architecture.json, genotype text) or the notation.
        arch: String,
        /// Experiment YAML (space, data, `train` block).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Overrides.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Output directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Continue an interrupted retraining in `--out` from its last epoch checkpoint (a
        /// finished one is not trained again); without a checkpoint, train from scratch.
        #[arg(long)]
        resume: bool,
    },
    /// Build an architecture's standalone network and print its parameters and FLOPs.
    Inspect {
        /// Architecture: a file or the notation.
        arch: String,
        /// Experiment YAML (space, data shape, `train` block for channels/layers).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Overrides.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// One JSON object with `params` and `flops`.
        #[arg(long)]
        json: bool,
        /// Input shape and classes (`--input 3x224x224 --classes 1000`).
        #[command(flatten)]
        shape: shape_arg::ShapeArgs,
    },
    /// List registered components (with `--config FILE` or `--plugin PATH`, the strategy
    /// plugins they name too).
    List(list_cmd::PluginSource),
    /// Describe a component: params and defaults.
    Describe {
        /// Component name.
        name: String,
        /// Strategy plugins to load first.
        #[command(flatten)]
        plugins: list_cmd::PluginSource,
    },
    /// Config utilities.
    Config {
        /// What to do.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run every combination of a sweep file (several at once), then write its report.
    Sweep(sweep_cmd::SweepArgs),
    /// Rebuild the tables and plots of a sweep or run directory from its files.
    Report(sweep_cmd::ReportArgs),
    /// Strategy plugins: `info PATH` (what a library declares), `new NAME` (a new crate).
    Plugin(plugin_cmd::PluginArgs),
    /// The family of a DARTS-CC run: one architecture per complexity t, with its lambda
    /// and parameter count (`--t 0,0.5,1 --mode simple|darts [--json]`).
    Derive(derive_cmd::DeriveArgs),
    /// Retrain a DARTS-CC family beside random architectures of the same sizes and
    /// plain-DARTS baselines, over several seeds, and report accuracy against parameters.
    Family(family_cmd::FamilyArgs),
    /// Time every option block of a single-path space (spos, proxyless, fbnet) on this
    /// machine and save the latency table that `space.params.latency_table` loads.
    Latency(latency_cmd::LatencyArgs),
    /// Export the found network of a single-path run with weights inherited from its
    /// supernet (`--inherit`).
    Export(export_cmd::ExportArgs),
    /// Score sampled architectures with the zero-cost proxies (NASWOT, synflow, grad_norm)
    /// and, on NAS-Bench-201, correlate them with the benchmark's accuracy.
    ZeroCost(zero_cost_cmd::ZeroCostArgs),
    /// Time one DARTS search step (arch step + weight step), another strategy's step, or a
    /// retraining step, on the CPU or on `--device`.
    Bench {
        /// Cells of the search network.
        #[arg(long, default_value_t = 8)]
        layers: usize,
        /// Initial channels.
        #[arg(long, default_value_t = 16)]
        channels: usize,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Image size (square, 3 channels).
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Timed steps (after one warm-up step).
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// The architecture gradient's order (darts).
        #[arg(long, value_enum, default_value_t = OrderArg::First)]
        order: OrderArg,
        /// The strategy timed: darts, gdas, spos, proxylessnas (or any trainer strategy), or
        /// `retrain`: one retraining step of the DARTS_V2 network (auxiliary head, drop path;
        /// DARTS retrains with --layers 20 --channels 36 --batch 96).
        #[arg(long, default_value = "darts")]
        strategy: String,
        /// Also report where the time goes: wall-clock ms per step of every kernel (forward
        /// and backward, by op name) and of the trainer's phases.
        #[arg(long)]
        profile: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `nas config ...`.
#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Load, merge and check an experiment file; print the resolved YAML.
    Validate {
        /// Experiment YAML.
        config: std::path::PathBuf,
        /// Overrides.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Print the resolved config.
        #[arg(long)]
        print: bool,
    },
}

/// Exit code of an error: 2 for usage/config errors, 1 for a failed run.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<NasError>() {
        Some(NasError::Config { .. })
        | Some(NasError::InvalidParams { .. })
        | Some(NasError::UnknownComponent { .. })
        | Some(NasError::DuplicateComponent { .. }) => 2,
        _ => 1,
    }
}

/// Log lines on stderr, written through `tracing-indicatif` so that the progress bars of long
/// work (spans with an `indicatif.pb_show` field: the epochs of `nas run`) stay below them.
fn init_logging(cli: &Cli) {
    use tracing_indicatif::filter::{hide_indicatif_span_fields, IndicatifFilter};
    use tracing_indicatif::IndicatifLayer;
    use tracing_subscriber::fmt::format::DefaultFields;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let level = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr())
        }
    };
    let bars = IndicatifLayer::new()
        .with_span_field_formatter(hide_indicatif_span_fields(DefaultFields::new()));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(bars.get_stderr_writer())
        .with_ansi(ansi)
        .with_target(false)
        .without_time();
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(bars.with_filter(IndicatifFilter::new(false)))
        .try_init();
}

/// `--color`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// `nas bench --order`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderArg {
    /// First-order architecture gradient.
    First,
    /// Second-order (unrolled) architecture gradient.
    Second,
}

impl From<OrderArg> for nas_core::OrderSetting {
    fn from(o: OrderArg) -> Self {
        match o {
            OrderArg::First => nas_core::OrderSetting::First,
            OrderArg::Second => nas_core::OrderSetting::Second,
        }
    }
}

/// Runs the command line with the built-in components plus those `register` adds. Returns
/// the process exit code.
///
/// It sets the process up first, so call it first thing in `main`, before any other thread
/// starts: the allocator keeps freed memory for the next step (off with
/// `NAS_RETAIN_MEMORY=0`), candle's pool spins less (`CANDLE_BARRIER_POOL_SPIN_LIMIT` is
/// written to the environment unless set), and `run`, `train` and `bench` make the main
/// thread a worker of rayon's global pool when it has two threads or more (see
/// docs/performance.md). [`run_with`] does none of this.
pub fn main_with(register: impl FnOnce(&mut Components) -> nas_core::Result<()>) -> i32 {
    memory::retain_freed_memory();
    threads::quiet_candle_pool();
    run_cli(std::env::args_os(), register, true)
}

/// [`main_with`] on the given arguments (the first is the program name): every kind a
/// `register` adds (spaces, strategies, estimators, optimizers, schedules, data sets) can
/// be named in a config. Returns the process exit code.
pub fn run_with<I, T>(
    args: I,
    register: impl FnOnce(&mut Components) -> nas_core::Result<()>,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    run_cli(args, register, false)
}

/// [`run_with`]; `own_process` (from [`main_with`]: the process is this command) lets a
/// command that computes one experiment make the main thread a rayon worker
/// (`threads::join_compute_pool`).
fn run_cli<I, T>(
    args: I,
    register: impl FnOnce(&mut Components) -> nas_core::Result<()>,
    own_process: bool,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if own_process
        && matches!(
            cli.command,
            Command::Run { .. } | Command::Train { .. } | Command::Bench { .. }
        )
    {
        threads::join_compute_pool();
    }
    init_logging(&cli);
    let result = nas_builtins::components()
        .and_then(|mut c| register(&mut c).map(|_| c))
        .map_err(anyhow::Error::from)
        .and_then(|c| commands::dispatch(&cli, &c));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code(&e)
        }
    }
}
