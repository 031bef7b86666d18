//! The error a command or query returns.

use std::fmt;

use crate::txn::StateError;

/// What kind of failure an [`Error`] is; the host maps it to an HTTP status. The host uses
/// this very type (it travels between servers in a command's outcome, hence serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// The payload or arguments are malformed (400).
    BadRequest,
    /// Something the request names does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// A state call failed.
    State,
    /// A bug in the plugin (500).
    Internal,
}

/// An error from a plugin's command or query. Returning one from `apply` drops every write
/// the command made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What went wrong, for the user.
    pub message: String,
}

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::BadRequest, message)
    }
    /// Something named does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }
    /// A conflict with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, message)
    }
    /// A bug.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<StateError> for Error {
    fn from(e: StateError) -> Self {
        Error::new(ErrorKind::State, e.to_string())
    }
}
