//! The one integration-test binary of this crate (one binary per crate: each links candle
//! once); topic files beside it, shared helpers in `common`.

mod common;
mod device_optimizer;
mod gated;
mod gradients;
mod in_place;
mod recalibration;
mod reward;
mod second_order;
mod separation;
mod zero_cost;
