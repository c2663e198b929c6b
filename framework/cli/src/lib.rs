//! The `nas` command line.
