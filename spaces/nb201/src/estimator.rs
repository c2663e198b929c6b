//! The tabular estimator: scores an NB201 cell by looking it up in the benchmark table.
//!
//! Protocol (Dong & Yang, ICLR 2020, section 5 and the reference scripts
//! `exps/NAS-Bench-201-algos/R_EA.py`): the search signal is the validation accuracy after
//! 12 training epochs (`hp = "12"`; for CIFAR-10 the `cifar10-valid` x-valid split), and
//! the reported figure is the test accuracy after 200 epochs (for CIFAR-10 the network
//! trained on the full training set, ori-test split).
use std::collections::BTreeMap;
use std::sync::Arc;

use nas_core::params::ensure;
use nas_core::{
    decode_params, Architecture, ComponentInfo, ComponentKind, Estimator, NasError, ParamDoc,
    Result, Score, SpaceSpec,
};
use serde::{Deserialize, Serialize};

use crate::cost::op_cost;
use crate::spec::{nb201_spec, OPS};
use crate::table::{Nb201Record, Nb201Table};

/// Registered name of the estimator.
pub const ESTIMATOR_NAME: &str = "nb201_table";

/// Component name used in parameter errors.
const COMPONENT: &str = "estimator nb201_table";

/// The benchmark's three data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nb201Dataset {
    /// CIFAR-10: search on `cifar10-valid` x-valid (12 epochs), report `cifar10` ori-test
    /// (200 epochs).
    #[default]
    Cifar10,
    /// CIFAR-100: search on x-valid (12 epochs), report x-test (200 epochs).
    Cifar100,
    /// ImageNet16-120: search on x-valid (12 epochs), report x-test (200 epochs).
    Imagenet16,
}

/// The figures of one row for one data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatasetFigures {
    /// 12-epoch validation accuracy: the search signal (fitness).
    pub valid_12: f64,
    /// 12-epoch test accuracy.
    pub test_12: f64,
    /// 200-epoch validation accuracy, when the table has it (CIFAR-10 only).
    pub valid_200: Option<f64>,
    /// 200-epoch test accuracy: the reported figure.
    pub test_200: f64,
}

impl Nb201Dataset {
    /// The columns of `row` for this data set.
    pub fn figures(self, row: &Nb201Record) -> DatasetFigures {
        match self {
            Nb201Dataset::Cifar10 => DatasetFigures {
                valid_12: row.c10valid_xvalid_12,
                test_12: row.c10_oritest_12,
                valid_200: Some(row.c10valid_xvalid_200),
                test_200: row.c10_oritest_200,
            },
            Nb201Dataset::Cifar100 => DatasetFigures {
                valid_12: row.c100_xvalid_12,
                test_12: row.c100_xtest_12,
                valid_200: None,
                test_200: row.c100_xtest_200,
            },
            Nb201Dataset::Imagenet16 => DatasetFigures {
                valid_12: row.in16_xvalid_12,
                test_12: row.in16_xtest_12,
                valid_200: None,
                test_200: row.in16_xtest_200,
            },
        }
    }
}

/// Default simulated seconds per query: the NB201 paper's search budget of 12,000 s
/// divided by the 100 queries of the random-search protocol this project reproduces.
/// The table has no training times, so this is a stand-in, not a measurement.
pub const DEFAULT_SECONDS_PER_QUERY: f64 = 120.0;

/// Parameters of the tabular estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TabularParams {
    /// Path of `nb201_merged.csv`; `None` looks in the default places
    /// ([`Nb201Table::locate`]).
    pub path: Option<String>,
    /// Data set whose columns are used.
    pub dataset: Nb201Dataset,
    /// Simulated training time charged per query, in seconds (`Score::cost_seconds`).
    pub seconds_per_query: f64,
}

impl Default for TabularParams {
    fn default() -> Self {
        TabularParams {
            path: None,
            dataset: Nb201Dataset::Cifar10,
            seconds_per_query: DEFAULT_SECONDS_PER_QUERY,
        }
    }
}

impl TabularParams {
    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        ensure(
            self.seconds_per_query.is_finite() && self.seconds_per_query >= 0.0,
            COMPONENT,
            "seconds_per_query",
            format!("must be finite and >= 0, got {}", self.seconds_per_query),
        )
    }
}

/// What `nas list` / `nas describe` show about the estimator.
pub fn estimator_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Estimator,
        name: ESTIMATOR_NAME.into(),
        summary: "NAS-Bench-201 table lookup: fitness = 12-epoch validation accuracy, \
                  report = 200-epoch test accuracy (the benchmark paper's protocol)"
            .into(),
        defaults: serde_json::to_value(TabularParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new(
                "path",
                "path of nb201_merged.csv; default ../shared/data/nb201/nb201_merged.csv \
                 relative to the current directory, then to the folders above the executable",
            ),
            ParamDoc::new("dataset", "cifar10 | cifar100 | imagenet16"),
            ParamDoc::new(
                "seconds_per_query",
                "simulated training seconds charged per query (the table has no times); \
                 default 120 = the NB201 paper's 12,000 s budget / 100 queries",
            ),
        ],
        origin: "built-in".into(),
    }
}

/// Builds the estimator from an untyped `params` block.
pub fn build_estimator(params: &serde_json::Value) -> Result<Box<dyn Estimator>> {
    let p: TabularParams = decode_params(COMPONENT, params)?;
    Ok(Box::new(TabularEstimator::new(p)?))
}

/// Scores NB201 cells from the benchmark table. Every [`Estimator::estimate`] is one
/// query; [`TabularEstimator::lookup`] reads the table without counting.
#[derive(Debug, Clone)]
pub struct TabularEstimator {
    spec: SpaceSpec,
    table: Arc<Nb201Table>,
    params: TabularParams,
    queries: u64,
}

impl TabularEstimator {
    /// Locates and loads the table (shared with other estimators of this process).
    pub fn new(params: TabularParams) -> Result<Self> {
        params.check()?;
        let path = Nb201Table::locate(params.path.as_deref())?;
        let table = Nb201Table::load_shared(path)?;
        Self::with_table(table, params)
    }

    /// An estimator over an already loaded table (`params.path` is ignored).
    pub fn with_table(table: Arc<Nb201Table>, params: TabularParams) -> Result<Self> {
        params.check()?;
        Ok(TabularEstimator {
            spec: nb201_spec(),
            table,
            params,
            queries: 0,
        })
    }

    /// The table.
    pub fn table(&self) -> &Arc<Nb201Table> {
        &self.table
    }

    /// The parameters.
    pub fn params(&self) -> &TabularParams {
        &self.params
    }

    /// The row of `arch`, without counting a query (for reports, never for searching).
    pub fn lookup(&self, arch: &Architecture) -> Result<&Nb201Record> {
        self.spec.check(arch)?;
        self.table.get(arch).ok_or_else(|| {
            NasError::data(
                self.table.source(),
                format!(
                    "architecture {:?} is not in the table ({} rows)",
                    arch.choices,
                    self.table.len()
                ),
            )
        })
    }

    /// The score of `arch` without counting a query.
    ///
    /// `fitness` = 12-epoch validation accuracy (%). `report`: `test_acc` (200-epoch test,
    /// %), `valid_acc` (200-epoch validation where the table has it, CIFAR-10; otherwise
    /// the 12-epoch one, and `valid_acc_epochs` says which), `valid_acc_12`, `test_acc_12`,
    /// `params` (millions), `flops` (millions of MACs, CIFAR-10 network, computed from
    /// the cell), `index` (benchmark index).
    pub fn score_of(&self, arch: &Architecture) -> Result<Score> {
        let row = self.lookup(arch)?;
        let f = self.params.dataset.figures(row);
        let flops = arch
            .choices
            .iter()
            .map(|&c| op_cost(OPS[c]).flops)
            .sum::<f64>()
            + self.spec.fixed_cost.flops;
        let report: BTreeMap<String, f64> = [
            ("test_acc", f.test_200),
            ("valid_acc", f.valid_200.unwrap_or(f.valid_12)),
            (
                "valid_acc_epochs",
                if f.valid_200.is_some() { 200.0 } else { 12.0 },
            ),
            ("valid_acc_12", f.valid_12),
            ("test_acc_12", f.test_12),
            ("params", row.params_m),
            ("flops", flops / 1e6),
            ("index", row.index as f64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(Score {
            fitness: f.valid_12,
            report,
            cost_seconds: self.params.seconds_per_query,
        })
    }
}

impl Estimator for TabularEstimator {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }

    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        let score = self.score_of(arch)?;
        self.queries += 1;
        Ok(score)
    }

    fn queries(&self) -> u64 {
        self.queries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "index,arch_str,params_cifar10_M,c10valid_xvalid_200,c10valid_oritest_200,c10_oritest_200_naswot,c10_oritest_200,c100_xtest_200,in16_xtest_200,c10valid_xvalid_12,c10_oritest_12,c100_xvalid_12,c100_xtest_12,in16_xvalid_12,in16_xtest_12
3,|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|,0.073306,84.377333,83.883333,86.616667,86.616667,58.306667,28.044444,73.560000,78.510000,44.380000,43.980000,23.833333,23.266667
";

    fn est(dataset: Nb201Dataset) -> TabularEstimator {
        let t = Arc::new(Nb201Table::from_reader("mem.csv", CSV.as_bytes()).unwrap());
        TabularEstimator::with_table(
            t,
            TabularParams {
                dataset,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn scores_each_dataset_from_its_columns_and_counts_queries() {
        let a = Architecture::new("nb201", vec![4, 1, 0, 0, 0, 1]);
        let mut e = est(Nb201Dataset::Cifar10);
        let s = e.estimate(&a).unwrap();
        assert_eq!(s.fitness, 73.56);
        assert_eq!(s.report["test_acc"], 86.616667);
        assert_eq!(s.report["valid_acc"], 84.377333);
        assert_eq!(s.report["valid_acc_epochs"], 200.0);
        assert_eq!(s.report["params"], 0.073306);
        assert_eq!(s.report["index"], 3.0);
        // No convolution in this cell: only the fixed part, 7,783,050 MACs.
        assert!((s.report["flops"] - 7.78305).abs() < 1e-9);
        assert_eq!(s.cost_seconds, 120.0);
        e.estimate(&a).unwrap();
        assert_eq!(e.queries(), 2);
        e.lookup(&a).unwrap();
        assert_eq!(e.queries(), 2);

        let s = est(Nb201Dataset::Cifar100).estimate(&a).unwrap();
        assert_eq!((s.fitness, s.report["test_acc"]), (44.38, 58.306667));
        assert_eq!(s.report["valid_acc_epochs"], 12.0);
        let s = est(Nb201Dataset::Imagenet16).estimate(&a).unwrap();
        assert_eq!((s.fitness, s.report["test_acc"]), (23.833333, 28.044444));
        assert_eq!(s.report["test_acc_12"], 23.266667);
    }

    #[test]
    fn unknown_or_foreign_architectures_are_errors_and_not_counted() {
        let mut e = est(Nb201Dataset::Cifar10);
        let err = e
            .estimate(&Architecture::new("nb201", vec![0; 6]))
            .unwrap_err();
        assert!(err.to_string().contains("not in the table"), "{err}");
        assert!(e.estimate(&Architecture::new("darts", vec![0; 6])).is_err());
        assert_eq!(e.queries(), 0);
    }

    #[test]
    fn params_decode_with_defaults_and_reject_unknown_keys() {
        let p: TabularParams = decode_params(COMPONENT, &serde_json::Value::Null).unwrap();
        assert_eq!(p, TabularParams::default());
        let p: TabularParams =
            decode_params(COMPONENT, &serde_json::json!({"dataset": "imagenet16"})).unwrap();
        assert_eq!(p.dataset, Nb201Dataset::Imagenet16);
        let e = decode_params::<TabularParams>(COMPONENT, &serde_json::json!({"datset": 1}))
            .unwrap_err();
        assert!(e.to_string().contains("datset"), "{e}");
        let e = build_estimator(&serde_json::json!({"seconds_per_query": -1.0}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("seconds_per_query"), "{e}");
        let e = build_estimator(&serde_json::json!({"path": "/nonexistent/nb.csv"}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/nb.csv"), "{e}");
        assert_eq!(estimator_info().defaults["dataset"], "cifar10");
    }
}
