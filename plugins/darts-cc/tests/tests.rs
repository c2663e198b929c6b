//! The one integration-test binary of this crate (one binary per crate: each links candle
//! once); topic files beside it, shared helpers in `common`.

mod chain_rule;
mod common;
mod extract;
mod search;
