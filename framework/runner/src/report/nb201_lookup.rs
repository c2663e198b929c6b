//! NAS-Bench-201 as the referee of weight-sharing searches: a run on the `nb201` space
//! whose strategy trained a supernet (so it reports no table `test_acc` of its own) gets the
//! benchmark's figures for the cell it found, `table_test_acc` (CIFAR-10 test accuracy after
//! 200 epochs, %, the NATS-Bench tss column `c10_oritest_200`, the figure the table-based
//! strategies report as `test_acc`) and `table_params_m` (parameters of the benchmark's
//! CIFAR-10 network, millions). Dong & Yang 2020, "NAS-Bench-201", Table 5, compares
//! weight-sharing methods this way.
//!
//! The table is looked for where the tabular estimator looks without a `path`
//! ([`nas_space_nb201::Nb201Table::locate`]); where it is not found the rows are left as
//! they are.
use nas_core::Architecture;
use nas_space_nb201::Nb201Table;

use super::runs::{read_summary, RunRow};

/// Adds `table_test_acc` and `table_params_m` to every finished `nb201` run of `rows` that
/// has an architecture and no `test_acc`.
pub fn add_table_figures(rows: &mut [RunRow]) {
    let wanted: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].finished() && !rows[i].metrics.contains_key("test_acc"))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let mut table = None;
    for i in wanted {
        let Ok(Some(s)) = read_summary(&rows[i].dir) else {
            continue;
        };
        let (true, Some(choices)) = (s.space == "nb201", s.choices) else {
            continue;
        };
        if table.is_none() {
            let Ok(t) = Nb201Table::locate(None).and_then(Nb201Table::load_shared) else {
                tracing::debug!("no NAS-Bench-201 table: nb201 runs get no table figures");
                return;
            };
            table = Some(t);
        }
        let Some(t) = table.as_ref() else {
            return;
        };
        if let Some(rec) = t.get(&Architecture::new("nb201", choices)) {
            let m = &mut rows[i].metrics;
            m.insert("table_test_acc".into(), rec.c10_oritest_200);
            m.insert("table_params_m".into(), rec.params_m);
        }
    }
}
