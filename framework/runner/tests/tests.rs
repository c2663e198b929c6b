//! The one integration-test binary of this crate (one binary per crate: each links candle
//! once); topic files beside it.

mod bench_proxylessnas;
mod enas_configs;
mod export;
mod nb201_supernet;
mod plugins;
mod proxylessnas;
