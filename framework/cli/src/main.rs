//! The `nas` binary: the built-in components and the command line.
fn main() {
    std::process::exit(nas_cli::main_with(|_| Ok(())));
}
