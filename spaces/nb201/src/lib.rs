//! The NAS-Bench-201 cell space: arch strings, the tabular benchmark estimator, and a weight-sharing supernet.
