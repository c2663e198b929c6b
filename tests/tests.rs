//! The workspace's integration-test binary (the project layout's top-level `tests/`): the
//! conformance suite that every registered space and every registered strategy runs, so
//! that a new component is checked by adding it to the registry (`nas-builtins`), not by
//! writing its tests again. Also the check that the candle patches of the CUDA build still
//! fit the candle-core in use (`candle_patches`).

mod candle_patches;
mod conformance;
