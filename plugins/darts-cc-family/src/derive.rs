//! The family of a finished DARTS-CC run: one architecture per complexity `t`, read from its
//! `strategy_state.json` (the hypernetwork) and `config.resolved.yaml` (the space), each
//! written as an architecture file every command reads (`nas derive`, `nas family`).
use std::path::{Path, PathBuf};

use nas_config::Experiment;
use nas_core::{Architecture, NasError, Result};
use nas_model::NetworkConfig;
use nas_strategy_darts_cc::{darts_cc_json, family, SavedHypernet};
use serde_json::json;

use nas_registry::Components;
use nas_rundir::files::write_json;

/// One derived member, as written to `derive-<mode>-t<t>.json`.
#[derive(Debug, Clone)]
pub struct DerivedMember {
    /// Normalised complexity.
    pub t: f64,
    /// `lambda = 10^(L_min + t (L_max - L_min))`.
    pub lambda: f64,
    /// The architecture.
    pub arch: Architecture,
    /// Its notation (a DARTS genotype for the DARTS space).
    pub notation: String,
    /// Parameters of the standalone network (`train` block's channels and cells), or of
    /// the space's cost model when it has no standalone networks.
    pub params: f64,
    /// Multiply-accumulates per example, likewise.
    pub flops: f64,
    /// The DARTS-CC JSON form (`[reduce, normal]` op indices), for cell spaces.
    pub darts_cc: Option<serde_json::Value>,
    /// The architecture file written.
    pub file: PathBuf,
}

/// A derived family and what it was derived from.
#[derive(Debug, Clone)]
pub struct DerivedFamily {
    /// The run's resolved experiment.
    pub experiment: Experiment,
    /// The standalone network the parameters are counted on.
    pub network: Option<NetworkConfig>,
    /// One member per requested `t`, in the order given.
    pub members: Vec<DerivedMember>,
}

fn config_error(file: &Path, message: String) -> NasError {
    NasError::Config {
        file: file.display().to_string(),
        location: None,
        message,
    }
}

/// The standalone network a run's architectures are counted on: the `train` block's
/// channels and cells when it has one, else the space's default.
pub fn network_of(exp: &Experiment, ts: &dyn nas_model::SearchSpace) -> NetworkConfig {
    match &exp.train {
        Some(t) => NetworkConfig {
            channels: t.channels,
            layers: t.layers,
            auxiliary: false,
        },
        None => ts.default_network_config(),
    }
}

/// Derives the family of the DARTS-CC run `dir` at every `t` by the space's rule `mode`,
/// writes `derive-<mode>-t<t>.json` (and `.darts-cc.json` for cell spaces) into `dir`, and
/// returns the members. Errors name the directory, file or value at fault.
pub fn derive_family(
    dir: &Path,
    ts: &[f64],
    mode: &str,
    comps: &Components,
) -> Result<DerivedFamily> {
    let cfg_path = dir.join("config.resolved.yaml");
    if !cfg_path.is_file() {
        return Err(config_error(
            dir,
            "not a run directory: it has no config.resolved.yaml".into(),
        ));
    }
    let exp = nas_config::load_experiment(&cfg_path, &[])?;
    if exp.strategy.name != "darts_cc" {
        return Err(config_error(
            &cfg_path,
            format!(
                "the family is extracted from a darts_cc run; this run used strategy `{}`",
                exp.strategy.name
            ),
        ));
    }
    if let Some(bad) = ts.iter().find(|t| !(0.0..=1.0).contains(*t)) {
        return Err(config_error(
            Path::new("--t"),
            format!("{bad} is outside [0, 1]"),
        ));
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
    let shape = nas_registry::data_shape_of(&exp, comps)?;
    let space = nas_registry::build_space(&exp, comps, shape)?;
    let rules = space.rules();
    let network = space.tensor().map(|ts| network_of(&exp, ts));
    let mut members = Vec::new();
    for m in family(&saved, ts, rules, mode)? {
        let cost = match (space.tensor(), &network) {
            (Some(ts), Some(cfg)) => ts.network_cost(&m.arch, cfg)?,
            _ => rules.spec().cost_of(&m.arch)?,
        };
        let notation = rules.format_arch(&m.arch);
        let reference = darts_cc_json(rules.spec(), &m.arch).ok();
        let stem = format!("derive-{mode}-t{}", m.t);
        let mut file = json!({
            "space": exp.space.name,
            "t": m.t,
            "lambda": m.lambda,
            "mode": mode,
            "architecture": m.arch,
            "notation": notation,
            "params": nas_rundir::files::count_json(cost.params),
            "flops": nas_rundir::files::count_json(cost.flops),
            "network": network,
            "weights": m.weights.0,
        });
        if let Some(o) = file.as_object_mut() {
            o.extend(rules.architecture_fields(&m.arch));
        }
        if let Some(r) = &reference {
            file["darts_cc"] = r.clone();
            write_json(&dir.join(format!("{stem}.darts-cc.json")), r)?;
        }
        let path = dir.join(format!("{stem}.json"));
        write_json(&path, &file)?;
        members.push(DerivedMember {
            t: m.t,
            lambda: m.lambda,
            arch: m.arch,
            notation,
            params: cost.params,
            flops: cost.flops,
            darts_cc: reference,
            file: path,
        });
    }
    Ok(DerivedFamily {
        experiment: exp,
        network,
        members,
    })
}
