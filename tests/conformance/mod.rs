//! Conformance: what every space and every strategy in the built-in registry must do.
//! - spaces ([`spaces`]): build from default params; bad params refused naming the key;
//!   derived architectures pass the spec and survive the notation and JSON round trips;
//!   cell diagrams (where drawn) are well formed;
//! - strategies ([`strategies`]): build from default params under their registered name;
//!   bad params refused naming the key; the saved state is plain JSON that a fresh instance
//!   takes back whole; an estimator strategy resumed from its state mid-search continues
//!   exactly as the uninterrupted one;
//! - devices ([`devices`]): every supernet and derived network computes on a GPU what it
//!   computes on the CPU (skipped without one).

mod devices;
mod spaces;
mod strategies;

use nas_registry::{BuildContext, Components, SpaceBox};

/// The built-in registry.
pub fn builtins() -> Components {
    nas_builtins::components().expect("the built-in components register")
}

/// Every registered space, built from default params at CIFAR's shape.
pub fn every_space(comps: &Components) -> Vec<(String, SpaceBox)> {
    let cx = BuildContext::new(comps);
    comps
        .spaces
        .names()
        .into_iter()
        .map(|name| {
            let f = comps.spaces.get(&name).unwrap();
            let space = f(&serde_json::Value::Null, &cx)
                .unwrap_or_else(|e| panic!("space `{name}` from default params: {e}"));
            (name, space)
        })
        .collect()
}

/// Asserts that `result` is an error whose text names `key`.
pub fn assert_refused_naming<T>(what: &str, result: nas_core::Result<T>, key: &str) {
    match result {
        Ok(_) => panic!("{what}: params with `{key}` were accepted"),
        Err(e) => assert!(
            e.to_string().contains(key),
            "{what}: the error does not name `{key}`: {e}"
        ),
    }
}
