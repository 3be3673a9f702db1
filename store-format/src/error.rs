//! The one error type of the format crate: what was wrong with which bytes.

use std::fmt;

/// Why bytes could not be encoded or decoded.
///
/// `Corrupt` means the bytes are not what a strata writer produces (a flipped
/// bit, a truncated file, a hostile manifest); `Unsupported` means they are
/// well-formed but from a format version this build does not read; `Io` comes
/// from the underlying reader or writer.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("unsupported {what} version {version} (this build reads version {supported})")]
    Unsupported {
        what: &'static str,
        version: u32,
        supported: u32,
    },
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl FormatError {
    pub(crate) fn corrupt(what: &'static str, detail: impl fmt::Display) -> Self {
        FormatError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }

    /// True when the bytes themselves are damaged or hostile (as opposed to I/O).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            FormatError::Corrupt { .. } | FormatError::InvalidPath { .. }
        )
    }
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;
