//! Consul's ACL system: the rule language ([`Rules`], HCL or JSON), the authorizer that
//! judges a token's requests ([`Authorizer`]), and the replicated state of policies, roles
//! and tokens ([`store`]).
//!
//! Owns: Consul's semantics, as pure functions (no I/O, no raft, no HTTP): which rule
//! decides (an exact rule beats any prefix rule, the longest prefix wins, and among the
//! rules of a token's several policies for the same segment `deny` wins, then the highest
//! level), and what each level allows (`write` allows `list` and `read`, `list` allows
//! `read`). Where a request comes from and what an endpoint needs is the server's
//! (`server/acl.rs`, `server/http/mod.rs`).

mod authorizer;
mod rules;
pub mod store;

pub use authorizer::Authorizer;
pub use rules::Rules;

/// A level of access, in Consul's order: a rule grants one, a request needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Nothing (a `deny` rule).
    Deny,
    /// Read.
    Read,
    /// List (keys under a prefix: `?keys`, `?recurse`).
    List,
    /// Write (implies list and read).
    Write,
}

impl Access {
    /// Consul's policy word (`read`, `list`, `write`, `deny`).
    pub fn parse(word: &str) -> Option<Access> {
        match word {
            "deny" => Some(Access::Deny),
            "read" => Some(Access::Read),
            "list" => Some(Access::List),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// Whether a rule of this level allows `wanted`.
    pub fn allows(self, wanted: Access) -> bool {
        self != Access::Deny && self >= wanted
    }
}

/// Resources whose rules name segments (`key "a/b"`, `key_prefix "a/"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `agent` / `agent_prefix`: node names of agents.
    Agent,
    /// `event` / `event_prefix`: user event names.
    Event,
    /// `key` / `key_prefix`: KV keys.
    Key,
    /// `node` / `node_prefix`: catalog node names.
    Node,
    /// `query` / `query_prefix`: prepared query names.
    Query,
    /// `service` / `service_prefix`: service names.
    Service,
    /// `session` / `session_prefix`: node names sessions are made on.
    Session,
}

impl Resource {
    /// Every resource with its rule word (the `_prefix` form adds that suffix).
    pub const ALL: [(Resource, &'static str); 7] = [
        (Resource::Agent, "agent"),
        (Resource::Event, "event"),
        (Resource::Key, "key"),
        (Resource::Node, "node"),
        (Resource::Query, "query"),
        (Resource::Service, "service"),
        (Resource::Session, "session"),
    ];
}

/// Resources with a bare level (`operator = "write"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bare {
    /// `acl`: the ACL system itself (and snapshots, which hold every secret).
    Acl,
    /// `keyring`: gossip encryption keys.
    Keyring,
    /// `mesh`: service mesh configuration.
    Mesh,
    /// `operator`: raft, autopilot, plugins, and the generic command and query API.
    Operator,
    /// `peering`: cluster peering.
    Peering,
}

impl Bare {
    /// Every bare resource with its rule word.
    pub const ALL: [(Bare, &'static str); 5] = [
        (Bare::Acl, "acl"),
        (Bare::Keyring, "keyring"),
        (Bare::Mesh, "mesh"),
        (Bare::Operator, "operator"),
        (Bare::Peering, "peering"),
    ];
}

/// Rules that could not be parsed: Consul's `Failed to parse ACL rules` with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to parse ACL rules: {0}")]
pub struct RulesError(pub String);

#[cfg(test)]
mod tests;
