//! Tensor-side traits: search spaces that build supernets and standalone networks.
