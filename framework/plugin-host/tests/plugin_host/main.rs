//! Integration tests of the plugin boundary, one binary with topic modules:
//! * `in_process`: tables built in this binary (checks, wrapper, callbacks, errors);
//! * `dylib`: the example plugins built as shared libraries and loaded from disk.
mod build;
mod dylib;
mod in_process;
mod mock;
