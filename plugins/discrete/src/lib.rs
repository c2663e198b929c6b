//! Discrete search strategies over an estimator: random search, regularized evolution (REA), REINFORCE.
