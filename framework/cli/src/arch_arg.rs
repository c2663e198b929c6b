//! The ARCH argument of `nas train` and `nas inspect`: an architecture that does not fit
//! the experiment's space (e.g. an NB201 arch string given with a DARTS config) is a usage
//! error (exit code 2) naming the argument, not a failed run.
use nas_core::{Architecture, NasError, SpaceRules};

/// Reads `arg` (a file or the notation) in `rules`' space; a parse failure becomes a
/// [`NasError::Config`] about the argument.
pub fn read(arg: &str, space: &str, rules: &dyn SpaceRules) -> nas_core::Result<Architecture> {
    nas_runner::retrain::read_arch_arg(arg, rules).map_err(|e| match e {
        NasError::Architecture(message) => NasError::Config {
            file: if std::path::Path::new(arg).is_file() {
                arg.to_string()
            } else {
                "the ARCH argument".into()
            },
            location: None,
            message: format!("not an architecture of space `{space}`: {message}"),
        },
        other => other,
    })
}
