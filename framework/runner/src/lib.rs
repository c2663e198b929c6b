//! Runs and sweeps: component registry, run directories, metrics, summaries, reports.
