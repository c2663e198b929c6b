//! The `nas` binary.
fn main() {}
