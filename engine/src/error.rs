//! The engine's error type: callers branch on the kind, the CLI maps kinds to
//! exit codes.

use std::path::PathBuf;

use strata_format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Stored bytes are damaged or hostile; `location` names the object (and
    /// offset) so an operator can find it.
    #[error("corruption in {location}: {detail}")]
    Corrupt { location: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no space left on device writing {path}")]
    NoSpace { path: PathBuf },
    /// A conditional put or delete found the object other than it required
    /// (there, changed, or gone); nothing was changed.
    #[error("{key} in {location} exists or changed")]
    Precondition { location: String, key: String },
    #[error("{kind} not found: {name}")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("cancelled")]
    Cancelled,
    /// The object exists but belongs to another project.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    #[error("quota exceeded: {0}")]
    Quota(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The catalog database failed (not corruption: that is `Corrupt`).
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("internal error (please report): {0}")]
    Bug(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on; ENOSPC becomes `NoSpace`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(28) || source.kind() == std::io::ErrorKind::StorageFull {
            return Error::NoSpace { path };
        }
        Error::Io { path, source }
    }

    /// A format error found in the object named by `location`.
    pub fn format(location: impl Into<String>, e: FormatError) -> Self {
        match e {
            FormatError::Io(source) => Error::io(location.into(), source),
            FormatError::Invalid { what, detail } => {
                Error::InvalidArgument(format!("invalid {what}: {detail}"))
            }
            FormatError::Unsupported { .. } => Error::Unsupported(e.to_string()),
            other => Error::Corrupt {
                location: location.into(),
                detail: other.to_string(),
            },
        }
    }
}

/// Adds the path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
