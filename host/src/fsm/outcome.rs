//! What applying a command or running a query gives back: the [`Outcome`] every server
//! computes alike, and the errors, classified by [`FailureKind`].
//!
//! Owns: the classification of failures. A failure carries its kind from here to the
//! client; the one place a kind becomes an HTTP status is `server::web`
//! (`status_of`). Nothing below the server speaks HTTP.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::plugin::{CallError, ErrorKind};

/// What kind of failure a request met: what a client should do about it. The server
/// turns it into an HTTP status in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// The request is malformed or names something invalid (fix the request).
    BadRequest,
    /// What it names does not exist (a plugin, command, query, server or object).
    NotFound,
    /// It conflicts with the current state (a version, a compare-and-set).
    Conflict,
    /// It was well formed but could not be carried out: a limit stopped it, or the plugin
    /// refused it for the state it found.
    Unprocessable,
    /// A bug or a failure inside the server or a plugin (a trap, storage).
    Internal,
    /// This server cannot serve it now (no leader, shutting down, busy); try again.
    Unavailable,
}

/// A command that failed: its kind and the message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The error.
    pub message: String,
    /// The plugin's own error, as it gave it, when the plugin refused the command (so that
    /// the plugin's `render` can present it); `None` for a trap, a limit or the host's own
    /// refusal.
    #[serde(default)]
    pub refusal: Option<PluginRefusal>,
}

/// A plugin's own error: its kind and message, unprefixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRefusal {
    /// The kind the plugin gave.
    pub kind: ErrorKind,
    /// The plugin's message.
    pub message: String,
}

/// The outcome of one plugin command; the same on every server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The FSM index the command was applied at (its `X-Consul-Index`).
    pub index: u64,
    /// The result bytes (CBOR), or the failure.
    pub result: Result<ByteBuf, Failure>,
}

impl Outcome {
    /// The outcome of an FSM call at `index`.
    pub fn new(index: u64, result: Result<Vec<u8>, FsmError>) -> Self {
        Outcome {
            index,
            result: result.map(ByteBuf::from).map_err(Failure::from),
        }
    }
}

impl From<FsmError> for Failure {
    fn from(e: FsmError) -> Self {
        Failure {
            kind: e.kind(),
            message: e.to_string(),
            refusal: e.refusal(),
        }
    }
}

/// Why an entry or a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsmError {
    /// No loaded plugin has this name.
    #[error("no plugin named {0} is loaded")]
    UnknownPlugin(String),
    /// The entry's index is not after the last applied one.
    #[error("entry at index {index} is out of order: index {last} was already applied")]
    OutOfOrder {
        /// The entry's index.
        index: u64,
        /// The last applied index.
        last: u64,
    },
    /// The plugin call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The store refused an operation of the host's own.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The command was written for a newer plugin version than the one in effect at its
    /// place in the log.
    #[error(
        "the command was written for plugin {plugin} {written}, but {running} is in effect \
         at this point of the log; send it again"
    )]
    WrittenForNewer {
        /// The plugin.
        plugin: String,
        /// The version the entry names.
        written: String,
        /// The version in effect.
        running: String,
    },
}

impl FsmError {
    /// Whether the entry was not applied and should be retried (this server's own failure).
    pub fn is_retryable(&self) -> bool {
        matches!(self, FsmError::Call(CallError::Unavailable { .. }))
    }

    /// The plugin's own error, when the plugin refused (not a trap, a limit or the host).
    pub fn refusal(&self) -> Option<PluginRefusal> {
        match self {
            FsmError::Call(CallError::Plugin { kind, message, .. }) => Some(PluginRefusal {
                kind: *kind,
                message: message.clone(),
            }),
            _ => None,
        }
    }

    /// What kind of failure this is: the plugin's own kind where it gave one; not found
    /// for an unknown plugin, command or query; unprocessable for a command stopped by a
    /// limit; internal for a trap (a plugin bug); unavailable for this server's own
    /// failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            FsmError::UnknownPlugin(_) => FailureKind::NotFound,
            FsmError::OutOfOrder { .. } | FsmError::State(_) => FailureKind::Internal,
            FsmError::WrittenForNewer { .. } => FailureKind::Conflict,
            FsmError::Call(c) => match c {
                CallError::UnknownCommand { .. } | CallError::UnknownQuery { .. } => {
                    FailureKind::NotFound
                }
                CallError::Plugin { kind, .. } => match kind {
                    ErrorKind::BadRequest => FailureKind::BadRequest,
                    ErrorKind::NotFound => FailureKind::NotFound,
                    ErrorKind::Conflict => FailureKind::Conflict,
                    ErrorKind::State => FailureKind::Unprocessable,
                    ErrorKind::Internal => FailureKind::Internal,
                },
                CallError::FuelExhausted { .. }
                | CallError::MemoryExhausted { .. }
                | CallError::BudgetExceeded { .. } => FailureKind::Unprocessable,
                CallError::Trap { .. } | CallError::Messages { .. } => FailureKind::Internal,
                CallError::Unavailable { .. } => FailureKind::Unavailable,
            },
        }
    }
}
