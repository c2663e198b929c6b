//! The one integration-test binary of this crate (one binary per crate: each links candle
//! once); topic files beside it, shared helpers in `common`.

mod common;
mod device;
mod finite_diff;
mod golden;
mod portable;
mod property;
mod step;
