//! # nas-darts-cc-family
//!
//! `nas family`: a DARTS-CC family beside its controls, retrained and reported. It lives
//! beside the `darts_cc` strategy (plugins/darts-cc) and works on its run directories.
//!
//! The DARTS-CC paper (Yakovlev, Grebenkova, Bakhteev, Strijov) judges a family by its
//! accuracy against its size, next to plain DARTS and to random architectures of the same
//! sizes. This crate builds that comparison from a finished `darts_cc` run:
//!
//! 1. the family: one architecture per `t` ([`derive::derive_family`]);
//! 2. controls: per member, `random` architectures drawn by the same derivation rule with a
//!    parameter count within `tolerance` of the member's ([`sampler::random_of_size`],
//!    seeded by the search run's seed), and any number of baselines (plain DARTS run
//!    directories or architecture files);
//! 3. every architecture retrained from scratch by `nas train`'s recipe (the `train` block
//!    of the training config) once per seed, into `OUT/runs/<id>-s<seed>`; a retraining that
//!    finished before is skipped and an interrupted one continues from its last epoch
//!    checkpoint, so an interrupted `nas family` resumes where it stopped;
//! 4. the report ([`crate::report`]): `family.csv`, `report.md` and plots,
//!    rebuilt from the files alone by `nas report OUT`.
//!
//! `OUT/family.json` (written before any training) lists the entries; a second call into the
//! same directory may change `--seeds` (finished retrainings are reused, new seeds added),
//! while other settings are refused rather than mixing two families.#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use nas_core::{Architecture, NasError, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use nas_registry::Components;
use nas_rundir::files::write_json;
use nas_runner::retrain::{read_arch_arg, retrain_resumable, RetrainOptions};

pub mod derive;
pub mod report;
pub mod sampler;

pub use report::{collect_family, is_family_dir, write_family_report, FamilyReport};

pub use derive::{derive_family, network_of, DerivedFamily, DerivedMember};
pub use sampler::{random_arch, random_of_size, SizeRequest, SizedDraw};

/// The index file of a family directory.
pub const FAMILY_INDEX: &str = "family.json";

/// What an entry of the comparison is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A member of the DARTS-CC family.
    Family,
    /// A random architecture of a member's size.
    Random,
    /// A baseline given by the user (plain DARTS).
    Baseline,
}

impl EntryKind {
    /// The name used in tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Family => "family",
            EntryKind::Random => "random",
            EntryKind::Baseline => "baseline",
        }
    }
}

/// One architecture of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyEntry {
    /// Unique id, also the stem of its files (`family-t0.5`, `random-t0.5-1`, `baseline-0`).
    pub id: String,
    /// What it is.
    pub kind: EntryKind,
    /// A readable label (`DARTS-CC t=0.5`, `random ~ t=0.5`, `darts-fmnist`).
    pub label: String,
    /// The family member's `t` (for a random entry: the member it matches).
    pub t: Option<f64>,
    /// The family member's lambda.
    pub lambda: Option<f64>,
    /// For a random entry: the parameter count it was drawn to match.
    #[serde(serialize_with = "nas_rundir::files::serialize_count_opt")]
    pub target_params: Option<f64>,
    /// Parameters of the standalone network.
    #[serde(serialize_with = "nas_rundir::files::serialize_count")]
    pub params: f64,
    /// Multiply-accumulates per example.
    #[serde(serialize_with = "nas_rundir::files::serialize_count")]
    pub flops: f64,
    /// The architecture in the space's notation.
    pub notation: String,
    /// Its architecture file, relative to the family directory.
    pub arch_file: String,
    /// Where it came from (the search run, a baseline path).
    pub source: String,
}

/// `OUT/family.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyIndex {
    /// The DARTS-CC search run.
    pub search_run: String,
    /// Derivation rule.
    pub mode: String,
    /// The config whose `train` block retrains every entry.
    pub train_config: String,
    /// `--set` overrides applied to it.
    pub sets: Vec<String>,
    /// Retraining seeds.
    pub seeds: Vec<u64>,
    /// Relative size tolerance of the random entries.
    pub tolerance: f64,
    /// The entries.
    pub entries: Vec<FamilyEntry>,
}

impl FamilyIndex {
    /// Reads `dir/family.json`.
    pub fn read(dir: &Path) -> Result<FamilyIndex> {
        let p = dir.join(FAMILY_INDEX);
        let text = std::fs::read_to_string(&p).map_err(|e| NasError::io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| NasError::Other(format!("{}: {e}", p.display())))
    }

    /// The retraining directory of `entry` under `seed`.
    pub fn run_dir(dir: &Path, entry: &FamilyEntry, seed: u64) -> PathBuf {
        dir.join("runs").join(format!("{}-s{seed}", entry.id))
    }
}

/// Options of `nas family`.
#[derive(Debug, Clone)]
pub struct FamilyOptions {
    /// The finished `darts_cc` run.
    pub search_run: PathBuf,
    /// Complexities of the family.
    pub ts: Vec<f64>,
    /// Derivation rule (`simple` or `darts` for the DARTS space).
    pub mode: String,
    /// Config whose `train` block retrains the entries (default: the search run's).
    pub train_config: Option<PathBuf>,
    /// `--set` overrides of the training config.
    pub sets: Vec<String>,
    /// Retraining seeds.
    pub seeds: Vec<u64>,
    /// Random architectures per family member.
    pub random: usize,
    /// Relative size tolerance of a random architecture.
    pub tolerance: f64,
    /// Draws per random architecture before the closest is taken.
    pub max_draws: usize,
    /// Baselines: run directories (their `architecture.json`) or architecture files.
    pub baselines: Vec<PathBuf>,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Retrainings at a time.
    pub jobs: usize,
    /// Plan and write `family.json` only.
    pub dry_run: bool,
}

/// What one retraining did.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainStatus {
    /// Trained now.
    Trained,
    /// Finished before (its `summary.json` says so).
    Skipped,
    /// Failed, with the error.
    Failed(String),
}

/// What `nas family` did.
#[derive(Debug)]
pub struct FamilyOutcome {
    /// The family directory.
    pub dir: PathBuf,
    /// Its index.
    pub index: FamilyIndex,
    /// `(run directory, status)` per retraining.
    pub runs: Vec<(PathBuf, TrainStatus)>,
    /// The report, unless `dry_run`.
    pub report: Option<crate::report::FamilyReport>,
}

impl FamilyOutcome {
    /// How many retrainings failed.
    pub fn failed(&self) -> usize {
        self.runs
            .iter()
            .filter(|(_, s)| matches!(s, TrainStatus::Failed(_)))
            .count()
    }
}

fn usage(what: &str, message: String) -> NasError {
    NasError::Config {
        file: what.into(),
        location: None,
        message,
    }
}

/// The architecture file of a baseline: a run directory's `architecture.json`, or the file.
fn baseline_file(p: &Path) -> Result<PathBuf> {
    if p.is_dir() {
        let f = p.join("architecture.json");
        if f.is_file() {
            Ok(f)
        } else {
            Err(usage(
                &p.display().to_string(),
                "a baseline directory must be a finished run (it has no architecture.json)".into(),
            ))
        }
    } else if p.is_file() {
        Ok(p.to_path_buf())
    } else {
        Err(usage(
            &p.display().to_string(),
            "no such baseline run directory or architecture file".into(),
        ))
    }
}

fn short(t: f64) -> String {
    format!("{t}")
}

/// An architecture file to write: its path and contents.
type PlannedFile = (PathBuf, serde_json::Value);

/// Plans the comparison: derives the family, draws the random controls and reads the
/// baselines; returns the index and the architecture files of `OUT/archs/` (not yet
/// written).
fn plan(opts: &FamilyOptions, comps: &Components) -> Result<(FamilyIndex, Vec<PlannedFile>)> {
    if opts.seeds.is_empty() {
        return Err(usage("--seeds", "give at least one seed".into()));
    }
    if opts.ts.is_empty() {
        return Err(usage("--t", "give at least one t".into()));
    }
    if !(opts.tolerance >= 0.0 && opts.tolerance.is_finite()) {
        return Err(usage(
            "--tolerance",
            format!("{} is not a non-negative number", opts.tolerance),
        ));
    }
    let fam = derive_family(&opts.search_run, &opts.ts, &opts.mode, comps)?;
    let exp = &fam.experiment;
    let shape = nas_registry::data_shape_of(exp, comps)?;
    let space = nas_registry::build_space(exp, comps, shape)?;
    let ts = space.tensor().ok_or_else(|| {
        exp.error_at(
            "space.name",
            "`nas family` retrains networks: this space has no standalone networks",
        )
    })?;
    let rules = space.rules();
    let network = network_of(exp, ts);
    let params_of = |a: &Architecture| Ok(ts.network_cost(a, &network)?.params);
    let train_config = opts
        .train_config
        .clone()
        .unwrap_or_else(|| opts.search_run.join("config.resolved.yaml"));
    let mut entries = Vec::new();
    let mut planned = Vec::new();
    let mut add_entry = |entry: FamilyEntry, arch: &Architecture| -> Result<()> {
        let file = json!({"space": exp.space.name, "architecture": arch,
            "notation": entry.notation, "params": nas_rundir::files::count_json(entry.params),
            "flops": nas_rundir::files::count_json(entry.flops),
            "network": network, "kind": entry.kind, "t": entry.t, "lambda": entry.lambda,
            "target_params": entry.target_params.map(nas_rundir::files::count_json)});
        planned.push((opts.out_dir.join(&entry.arch_file), file));
        entries.push(entry);
        Ok(())
    };
    let mut rng = nas_core::component_rng(exp.seed, "family.random");
    let mut taken: Vec<Architecture> = fam.members.iter().map(|m| m.arch.clone()).collect();
    let source = opts.search_run.display().to_string();
    for m in &fam.members {
        let id = format!("family-t{}", short(m.t));
        add_entry(
            FamilyEntry {
                arch_file: format!("archs/{id}.json"),
                id,
                kind: EntryKind::Family,
                label: format!("DARTS-CC t={}", short(m.t)),
                t: Some(m.t),
                lambda: Some(m.lambda),
                target_params: None,
                params: m.params,
                flops: m.flops,
                notation: m.notation.clone(),
                source: source.clone(),
            },
            &m.arch,
        )?;
    }
    for m in &fam.members {
        for r in 0..opts.random {
            let draw = random_of_size(
                rules,
                &opts.mode,
                &params_of,
                SizeRequest {
                    target: m.params,
                    tolerance: opts.tolerance,
                    max_draws: opts.max_draws,
                },
                &taken,
                &mut rng,
            )?;
            if draw.deviation > opts.tolerance {
                tracing::warn!(
                    "t={}: no random architecture within {:.0}% of {} parameters in {} draws; \
                     the closest has {} ({:+.1}%)",
                    m.t,
                    opts.tolerance * 100.0,
                    m.params,
                    opts.max_draws,
                    draw.params,
                    (draw.params / m.params - 1.0) * 100.0
                );
            }
            let cost = ts.network_cost(&draw.arch, &network)?;
            let id = format!("random-t{}-{r}", short(m.t));
            add_entry(
                FamilyEntry {
                    arch_file: format!("archs/{id}.json"),
                    id,
                    kind: EntryKind::Random,
                    label: format!("random ~ t={}", short(m.t)),
                    t: Some(m.t),
                    lambda: Some(m.lambda),
                    target_params: Some(m.params),
                    params: cost.params,
                    flops: cost.flops,
                    notation: rules.format_arch(&draw.arch),
                    source: format!("random (seed {}, draw {})", exp.seed, draw.draws),
                },
                &draw.arch,
            )?;
            taken.push(draw.arch);
        }
    }
    for (i, b) in opts.baselines.iter().enumerate() {
        let file = baseline_file(b)?;
        let arch = read_arch_arg(&file.display().to_string(), rules)?;
        let cost = ts.network_cost(&arch, &network)?;
        let name = b
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| b.display().to_string());
        let id = format!("baseline-{i}");
        add_entry(
            FamilyEntry {
                arch_file: format!("archs/{id}.json"),
                id,
                kind: EntryKind::Baseline,
                label: name,
                t: None,
                lambda: None,
                target_params: None,
                params: cost.params,
                flops: cost.flops,
                notation: rules.format_arch(&arch),
                source: file.display().to_string(),
            },
            &arch,
        )?;
    }
    let index = FamilyIndex {
        search_run: source,
        mode: opts.mode.clone(),
        train_config: train_config.display().to_string(),
        sets: opts.sets.clone(),
        seeds: {
            // Each seed once, in the order given.
            let mut seen = std::collections::BTreeSet::new();
            opts.seeds
                .iter()
                .copied()
                .filter(|s| seen.insert(*s))
                .collect()
        },
        tolerance: opts.tolerance,
        entries,
    };
    Ok((index, planned))
}

fn finished(run_dir: &Path) -> bool {
    std::fs::read_to_string(run_dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["status"] == "finished")
}

/// Derives the family, draws its controls, retrains every entry under every seed (skipping
/// those finished before) and writes the report. A failed retraining is recorded and the
/// others go on.
pub fn run_family(opts: &FamilyOptions, comps: &Components) -> Result<FamilyOutcome> {
    let dir = opts.out_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
    let (index, files) = plan(opts, comps)?;
    let index_path = dir.join(FAMILY_INDEX);
    if index_path.is_file() {
        // The same family with other seeds is the same comparison: retrainings of seeds run
        // before are kept (and skipped), new seeds are added.
        let before = FamilyIndex::read(&dir)?;
        let without_seeds = |i: &FamilyIndex| FamilyIndex {
            seeds: Vec::new(),
            ..i.clone()
        };
        if without_seeds(&before) != without_seeds(&index) {
            return Err(usage(
                &index_path.display().to_string(),
                "this directory holds a family made with other settings (search run, t, \
                 mode, training config, random draws or baselines; only --seeds may change); \
                 give another --out"
                    .into(),
            ));
        }
    }
    // Every training config is loaded (and checked) before anything is written, so a
    // mistake there can be fixed and the call repeated with the same settings.
    let train_path = PathBuf::from(&index.train_config);
    let mut jobs = Vec::new();
    for seed in &index.seeds {
        let mut sets = index.sets.clone();
        sets.push(format!("seed={seed}"));
        let exp = nas_config::load_experiment(&train_path, &sets)?;
        if exp.train.is_none() {
            return Err(exp.error_at(
                "train",
                "the training config needs a `train` block (the retraining recipe)",
            ));
        }
        for e in &index.entries {
            jobs.push((e.clone(), *seed, exp.clone()));
        }
    }
    let archs = dir.join("archs");
    std::fs::create_dir_all(&archs).map_err(|e| NasError::io(&archs, e))?;
    for (path, contents) in &files {
        write_json(path, contents)?;
    }
    write_json(&index_path, &index)?;
    if opts.dry_run {
        return Ok(FamilyOutcome {
            dir,
            index,
            runs: Vec::new(),
            report: None,
        });
    }
    let statuses = Mutex::new(vec![TrainStatus::Skipped; jobs.len()]);
    let next = AtomicUsize::new(0);
    let total = jobs.len();
    let worker = || -> Result<()> {
        loop {
            let k = next.fetch_add(1, Ordering::SeqCst);
            let Some((entry, seed, exp)) = jobs.get(k) else {
                return Ok(());
            };
            let run_dir = FamilyIndex::run_dir(&dir, entry, *seed);
            if finished(&run_dir) {
                continue;
            }
            // An interrupted retraining continues from its last epoch checkpoint.
            let arch_file = dir.join(&entry.arch_file).display().to_string();
            let ropts = RetrainOptions {
                out_dir: Some(run_dir.clone()),
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                retrain_resumable(exp, comps, &arch_file, &ropts)
            }));
            let status = match result {
                Ok(Ok((_, rep))) => {
                    tracing::info!(
                        "[{}/{total}] {} seed {seed}: {} parameters, test_acc {:.4}",
                        k + 1,
                        entry.label,
                        rep.params,
                        rep.test_acc
                    );
                    TrainStatus::Trained
                }
                Ok(Err(e)) => TrainStatus::Failed(e.to_string()),
                Err(_) => TrainStatus::Failed("the retraining panicked".into()),
            };
            if let TrainStatus::Failed(e) = &status {
                tracing::error!("{} seed {seed} failed: {e}", entry.label);
            }
            statuses
                .lock()
                .map_err(|_| NasError::Other("family status lock poisoned".into()))?[k] = status;
        }
    };
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..opts.jobs.max(1).min(total.max(1)))
            .map(|_| s.spawn(worker))
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| NasError::Other("a family worker panicked".into()))??;
        }
        Ok(())
    })?;
    let statuses = statuses
        .into_inner()
        .map_err(|_| NasError::Other("family status lock poisoned".into()))?;
    let runs = jobs
        .iter()
        .zip(statuses)
        .map(|((e, seed, _), st)| (FamilyIndex::run_dir(&dir, e, *seed), st))
        .collect();
    let report = crate::report::write_family_report(&dir)?;
    Ok(FamilyOutcome {
        dir,
        index,
        runs,
        report: Some(report),
    })
}
