//! The one error type of the library crates.
use thiserror::Error;

/// Result with [`NasError`].
pub type Result<T> = std::result::Result<T, NasError>;

/// Everything that can go wrong in the framework, with the context a user needs to fix it.
#[derive(Debug, Error)]
pub enum NasError {
    /// A configuration file or value is wrong.
    #[error("config error in {file}{}: {message}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Config {
        /// The file (or `--set`) the value came from.
        file: String,
        /// `line:column` and/or key path, when known.
        location: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A component's `params` block does not decode or fails its checks.
    #[error("invalid params for {component} at `{path}`: {message}")]
    InvalidParams {
        /// Component name (`strategy darts`, `optimizer sgd`, ...).
        component: String,
        /// Key path inside `params` (`.` for the block itself).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A component name that no registry knows.
    #[error("unknown {kind} `{name}`; known: {known}")]
    UnknownComponent {
        /// Component kind (space, strategy, ...).
        kind: String,
        /// The name asked for.
        name: String,
        /// Comma-separated list of registered names.
        known: String,
    },
    /// A name registered twice.
    #[error("{kind} `{name}` is already registered")]
    DuplicateComponent {
        /// Component kind.
        kind: String,
        /// The clashing name.
        name: String,
    },
    /// An architecture that does not fit its space, or cannot be parsed.
    #[error("architecture error: {0}")]
    Architecture(String),
    /// A data file is missing or corrupt.
    #[error("data error in {file}: {message}")]
    Data {
        /// The file or directory.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A loss or gradient is not finite.
    #[error("non-finite {quantity} at epoch {epoch}, step {step}")]
    NonFinite {
        /// What was not finite (`train loss`, `arch gradient`, ...).
        quantity: String,
        /// Epoch (0-based).
        epoch: usize,
        /// Step within the epoch (0-based).
        step: usize,
    },
    /// A strategy asked for something its environment cannot give.
    #[error("strategy error: {0}")]
    Strategy(String),
    /// A tensor-side failure (from the tensor library).
    #[error("tensor error: {0}")]
    Tensor(String),
    /// A plugin failed to load or failed while running.
    #[error("plugin error: {0}")]
    Plugin(String),
    /// An I/O failure on a named path.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, with a message.
    #[error("{0}")]
    Other(String),
}

impl NasError {
    /// An [`NasError::Io`] for `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        NasError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A [`NasError::Data`] for `file`.
    pub fn data(file: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        NasError::Data {
            file: file.as_ref().display().to_string(),
            message: message.into(),
        }
    }
}
