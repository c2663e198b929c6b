//! The workspace's integration-test binary (the project layout's top-level `tests/`): the
//! conformance suite that every registered space and every registered strategy runs, so
//! that a new component is checked by adding it to the registry (`nas-builtins`), not by
//! writing its tests again.

mod conformance;
