//! The one integration-test binary of this crate (one binary per crate: each links candle
//! once); topic files beside it, shared helpers in `support`.

mod bad_input;
mod cli;
mod darts_cc;
mod gumbel;
mod non_finite;
mod parsers_random;
mod plugins;
mod published_sizes;
mod resume;
mod resume_enas;
mod slurm;
mod support;
mod sweep_cli;
mod sweep_stages;
