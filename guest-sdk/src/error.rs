//! The error a command or query returns, and CBOR encoding helpers.

use serde::{Serialize, de::DeserializeOwned};
use std::fmt;

use crate::txn::StateError;

/// What kind of failure an [`Error`] is; the host maps it to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Encodes a value as CBOR, the wire format of payloads, results and objects.
pub fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)
        .map_err(|e| Error::internal(format!("encoding CBOR: {e}")))?;
    Ok(out)
}

/// Decodes CBOR; `what` names the value in the error (e.g. "payload of command set").
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    decode_cbor(bytes, || what.to_string())
}

/// [`from_cbor`] that names the value only when decoding fails: the SDK decodes every
/// payload and object through it, and formatting a name for each was a measurable share
/// of a small command.
pub(crate) fn decode_cbor<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, Error> {
    use ciborium::de::Error as E;
    ciborium::from_reader(bytes).map_err(|e| {
        let why = match e {
            E::Semantic(Some(at), msg) => format!("{msg} (at byte {at})"),
            E::Semantic(None, msg) => msg,
            E::Syntax(at) => format!("malformed CBOR at byte {at}"),
            E::Io(e) => format!("truncated CBOR: {e:?}"),
            E::RecursionLimitExceeded => "CBOR nested too deeply".into(),
        };
        Error::bad_request(format!("decoding {}: {why}", what()))
    })
}
