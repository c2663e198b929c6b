//! The C ABI for strategy plugins and the one-line macro that makes a strategy crate a plugin.
