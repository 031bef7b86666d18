//! Consul's ACL rule language and authorizer, as pure functions: no I/O, no raft, no HTTP.
//!
//! This module owns four things (the fourth, [`store`], the replicated policies, roles and
//! tokens and the log operations that change them):
//! - the words: an [`Access`] level, the segmented [`Resource`]s (`key "foo"`,
//!   `service_prefix ""`, ...) and the [`Bare`] ones (`operator = "write"`);
//! - [`Rules`]: one policy's rules, parsed from HCL or JSON (`rules.rs` holds the model and
//!   the merge, `parse.rs` the text), with Consul Enterprise's `namespace` and `partition`
//!   blocks kept per scope;
//! - [`Authorizer`]: what one token may do, the merged rules of its policies over a default
//!   (`authorizer.rs`), with Consul's precedence: an exact rule beats any prefix rule, the
//!   longest prefix wins, and rules of equal specificity merge as deny > write > list > read.
//!
//! The Consul sources this follows: `acl/policy.go` (rules and their validation),
//! `acl/policy_merger.go` (`takesPrecedenceOver`), `acl/policy_authorizer.go` (`getPolicy`,
//! `enforce`, `KeyWritePrefix`, mesh and peering falling back to operator),
//! `acl/static_authorizer.go` (`AllowAll` grants everything but ACL management and
//! snapshots) and `acl/chained_authorizer.go` (the first authorizer that decides wins).
//!
//! It imports nothing else from the crate, so every other module may use it.

mod authorizer;
mod parse;
mod rules;
pub mod store;

#[cfg(test)]
mod tests;

pub use authorizer::Authorizer;
pub use rules::{Match, NamespaceBlock, PartitionBlock, RuleSet, Rules, SegmentRule};

/// An access level, in Consul's order: a rule's level (its `policy = "..."`), and what a
/// caller asks for. `Deny < Read < List < Write`; `list` is only meaningful for keys
/// (Consul's `acl.enable_key_list_policy`: `?keys` and `?recurse` need it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// `deny`: nothing, and no fall-through to a broader rule or the default.
    Deny,
    /// `read`: read only.
    Read,
    /// `list`: read and list (keys only).
    List,
    /// `write`: read, list and write.
    Write,
}

impl Access {
    /// Consul's spelling: `deny`, `read`, `list`, `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }

    /// The level a policy value names, case-insensitively as Consul's
    /// `AccessLevelFromString`; `None` for anything else.
    pub fn from_policy(value: &str) -> Option<Access> {
        match value.to_ascii_lowercase().as_str() {
            "deny" => Some(Access::Deny),
            "read" => Some(Access::Read),
            "list" => Some(Access::List),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// Whether a rule of this level grants `wanted` (Consul's `enforce`): write grants
    /// everything, list grants list and read, read grants read, deny grants nothing.
    /// Asking for [`Access::Deny`] asks for nothing, so it is always granted.
    pub fn grants(self, wanted: Access) -> bool {
        match wanted {
            Access::Deny => true,
            Access::Read => self >= Access::Read,
            Access::List => self >= Access::List,
            Access::Write => self == Access::Write,
        }
    }

    /// Whether this level wins over `other` when two rules of equal specificity meet
    /// (Consul's `takesPrecedenceOver`): deny beats everything, then write, list, read.
    pub fn takes_precedence_over(self, other: Access) -> bool {
        fn rank(a: Access) -> u8 {
            match a {
                Access::Deny => 4,
                Access::Write => 3,
                Access::List => 2,
                Access::Read => 1,
            }
        }
        rank(self) > rank(other)
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resources with segments: a rule names one (`key "foo/bar"`) or a prefix of them
/// (`key_prefix "foo/"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `agent` / `agent_prefix`, by node name.
    Agent,
    /// `event` / `event_prefix`, by user event name.
    Event,
    /// `key` / `key_prefix`, by KV key.
    Key,
    /// `node` / `node_prefix`, by node name.
    Node,
    /// `query` / `query_prefix`, by prepared query name.
    Query,
    /// `service` / `service_prefix`, by service name (these also take `intentions`).
    Service,
    /// `session` / `session_prefix`, by node name.
    Session,
}

impl Resource {
    /// Every segmented resource.
    pub const ALL: [Resource; 7] = [
        Resource::Agent,
        Resource::Event,
        Resource::Key,
        Resource::Node,
        Resource::Query,
        Resource::Service,
        Resource::Session,
    ];

    /// The rule name of its exact form (`key`); the prefix form adds `_prefix`.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Key => "key",
            Resource::Node => "node",
            Resource::Query => "query",
            Resource::Service => "service",
            Resource::Session => "session",
        }
    }
}

/// Resources without segments: a bare value (`operator = "write"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bare {
    /// `acl`: the ACL API, and snapshots (`acl = "write"`). A default of allow never
    /// grants it (Consul's `AllowAll` does not manage ACLs).
    Acl,
    /// `keyring`: the keyring API.
    Keyring,
    /// `mesh`: mesh configuration; with no `mesh` rule, the `operator` rule decides.
    Mesh,
    /// `operator`: the operator API (raft, autopilot), except the keyring.
    Operator,
    /// `peering`: cluster peering; with no `peering` rule, the `operator` rule decides.
    Peering,
}

impl Bare {
    /// Every bare resource.
    pub const ALL: [Bare; 5] = [
        Bare::Acl,
        Bare::Keyring,
        Bare::Mesh,
        Bare::Operator,
        Bare::Peering,
    ];

    /// Its name in the rules (`operator`).
    pub fn name(self) -> &'static str {
        match self {
            Bare::Acl => "acl",
            Bare::Keyring => "keyring",
            Bare::Mesh => "mesh",
            Bare::Operator => "operator",
            Bare::Peering => "peering",
        }
    }
}

/// Rules that could not be parsed, with a message naming the line or the rule at fault, in
/// Consul's words where Consul has them (`Failed to parse ACL rules: ...`,
/// `Invalid key policy: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(String);

impl RulesError {
    pub(crate) fn new(message: impl Into<String>) -> RulesError {
        RulesError(message.into())
    }

    /// The message, as shown to the user.
    pub fn message(&self) -> &str {
        &self.0
    }
}
