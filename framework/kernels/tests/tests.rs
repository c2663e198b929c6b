//! The one integration-test binary of this crate (one binary per crate: each links candle
//! once); topic files beside it.

mod chunks;
mod emulated;
mod finite_diff;
mod gather;
mod golden;
mod sgd;
