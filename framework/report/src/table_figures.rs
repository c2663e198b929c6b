//! A benchmark table as the referee of weight-sharing searches: a finished run that reports
//! no `test_acc` of its own (its strategy trained a supernet) gets the figures its space's
//! table holds for the architecture it found ([`nas_core::SpaceRules::table_figures`]; the
//! NB201 space gives `table_test_acc` and `table_params_m`). The space is rebuilt from the
//! run's `config.resolved.yaml` through the registry; runs whose space has no table, or
//! whose table is not found, are left as they are.
use nas_core::Architecture;
use nas_registry::Components;
use nas_rundir::read_summary;

use super::runs::RunRow;

/// Adds the table figures of its architecture to every finished run of `rows` that has an
/// architecture and no `test_acc`.
pub fn add_table_figures(rows: &mut [RunRow], comps: &Components) {
    for row in rows
        .iter_mut()
        .filter(|r| r.finished() && !r.metrics.contains_key("test_acc"))
    {
        let Ok(Some(s)) = read_summary(&row.dir) else {
            continue;
        };
        let Some(choices) = s.choices else {
            continue;
        };
        let Ok(exp) = nas_config::load_experiment(&row.dir.join("config.resolved.yaml"), &[])
        else {
            continue;
        };
        // The rules do not depend on the data shape: no data is loaded for a report.
        let Ok(space) = nas_registry::build_space(&exp, comps, nas_registry::data_shape(None))
        else {
            continue;
        };
        if let Some(figures) = space
            .rules()
            .table_figures(&Architecture::new(s.space.clone(), choices))
        {
            row.metrics.extend(figures);
        }
    }
}
