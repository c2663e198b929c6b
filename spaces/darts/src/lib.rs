//! The DARTS cell search space: operations, supernet, genotype notation, derivation, standalone networks for retraining.
