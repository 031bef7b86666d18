//! Leader timers: what the leader tells a plugin's tick ([`TickCtx`]) and what the tick
//! asks it to propose ([`Proposal`]).
//!
//! The leader calls a plugin's tick ([`crate::Plugin::tick`]) about once a second,
//! read-only on its current state, and proposes every returned command through the log
//! as an entry of its own. Time reaches `apply` only through the entry's timestamp, so
//! every server applies the same thing. A command proposed from a tick must check, when
//! it applies, that what the tick saw still holds: a write may come in between (a
//! session renewed after the tick found it expired, say).

use serde::Serialize;

use crate::cbor::to_cbor;
use crate::error::Error;
use crate::plugin::Command;

/// One server of the raft configuration, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// Its raft id.
    pub id: u64,
    /// Its node name.
    pub name: String,
    /// Its server-port address, `host:port`.
    pub address: String,
    /// `alive`, `failed` or `left` (autopilot's judgement; Consul's Serf status).
    pub status: String,
    /// Whether it votes.
    pub voter: bool,
    /// The fsmhost version it runs (empty until known).
    pub version: String,
}

/// What the leader tells a tick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TickCtx {
    /// The leader's clock, ms since the Unix epoch.
    pub now_ms: u64,
    /// When this server became leader (timers a new leader restarts at full length count
    /// from here).
    pub leader_since_ms: u64,
    /// The datacenter.
    pub datacenter: String,
    /// The servers of the raft configuration (empty until autopilot judged a round).
    pub servers: Vec<ServerInfo>,
    /// How long tombstones are kept, ms (`tombstone_ttl`).
    pub tombstone_ttl_ms: u64,
}

/// A command a tick asks the leader to propose (made with [`Command::proposal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The command.
    pub command: String,
    /// Its CBOR payload.
    pub payload: Vec<u8>,
}

impl<Req: Serialize, Out> Command<Req, Out> {
    /// This command with `req`, for a tick to return.
    pub fn proposal(&self, req: &Req) -> Result<Proposal, Error> {
        Ok(Proposal {
            command: self.name().to_string(),
            payload: to_cbor(req)?,
        })
    }
}

/// A plugin's tick: reads the state, returns what to propose.
pub type TickFn = fn(&dyn crate::Txn, &TickCtx) -> Result<Vec<Proposal>, Error>;
