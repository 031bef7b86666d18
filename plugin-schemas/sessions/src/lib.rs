//! Consul's `sessions` table (`agent/consul/state/session.go`), in one definition for the
//! two plugins that use it: the catalog plugin owns it (it creates and destroys sessions,
//! and invalidates them in the transaction in which a check they hang on goes critical or
//! their node is deregistered), and the kv plugin reads it (a lock is held by a live
//! session). The reader decodes exactly what the owner stores; the table's layout is the
//! contract between them, which the host enforces at load and at install
//! ([`fsmhost_guest::Plugin::reads`]). Raise [`SESSIONS`]'s layout, with a migration in
//! the catalog, whenever [`Session`]'s bytes change, and build both plugins again.
//!
//! This crate is a library, not a plugin: it exports no component.

use fsmhost_guest::{Edition, Index, Table, Tenancy};
use serde::{Deserialize, Serialize};

/// The edition this build is (the `enterprise` feature, which the catalog's and kv's
/// `enterprise` features turn on).
pub const EDITION: Edition = if cfg!(feature = "enterprise") {
    Edition::Enterprise
} else {
    Edition::Oss
};

/// What happens to a session's locks when it is invalidated: Consul's `SessionBehavior`.
pub const BEHAVIORS: [&str; 2] = ["release", "delete"];

/// A service check a session hangs on (Consul's `ServiceCheck`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceCheck {
    /// The check's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its namespace (enterprise edition).
    #[serde(default)]
    pub namespace: String,
}

/// A session: Consul's `structs.Session`, with its field names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Session {
    /// Its UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// The node it belongs to.
    pub node: String,
    /// How long a lock it held cannot be taken after it is invalidated, in nanoseconds.
    #[serde(default)]
    pub lock_delay: u64,
    /// `release` or `delete` (see [`BEHAVIORS`]).
    pub behavior: String,
    /// Its time to live, as Go's duration text (`""`: none).
    #[serde(rename = "TTL", default)]
    pub ttl: String,
    /// The node checks it hangs on.
    #[serde(default)]
    pub node_checks: Vec<String>,
    /// The service checks it hangs on.
    #[serde(default)]
    pub service_checks: Vec<ServiceCheck>,
    /// The index that created it.
    pub create_index: u64,
    /// The index that last changed it.
    pub modify_index: u64,
    /// Its partition and namespace (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// A session ID in a tenancy: what `sessions.id` is looked up by.
pub type SessionIn = (Tenancy, String);

/// A node name in a partition: what `sessions.node` is looked up by.
pub type NodeIn = (Tenancy, String);

fn id_key(a: &SessionIn) -> Vec<u8> {
    a.0.key(EDITION).string_lower(&a.1).build()
}

fn node_key(a: &NodeIn) -> Vec<u8> {
    a.0.key(EDITION).string_lower(&a.1).build()
}

fn tenancy_key(t: &Tenancy) -> Vec<u8> {
    t.key(EDITION).build()
}

/// `sessions.id`: the session's ID, case-insensitive (in its partition and namespace).
pub static SESSIONS_ID: Index<Session, SessionIn> = Index::new(
    &SESSIONS,
    "id",
    |s: &Session, k| k.push(id_key(&(s.tenancy.clone(), s.id.clone()))),
    id_key,
)
.unique();

/// `sessions.node`: the sessions of a node (in the node's partition, every namespace).
pub static SESSIONS_NODE: Index<Session, NodeIn> = Index::new(
    &SESSIONS,
    "node",
    |s: &Session, k| {
        let partition = Tenancy {
            partition: s.tenancy.partition.clone(),
            namespace: String::new(),
        };
        k.push(node_key(&(partition, s.node.clone())))
    },
    node_key,
);

/// `sessions.namespace` (enterprise edition): the sessions of a partition and namespace.
pub static SESSIONS_NAMESPACE: Index<Session, Tenancy> = Index::new(
    &SESSIONS,
    "namespace",
    |s: &Session, k| k.push(tenancy_key(&s.tenancy)),
    tenancy_key,
)
.prefix(tenancy_key);

/// The `sessions` table.
pub static SESSIONS: Table<Session> = Table::new(
    "sessions",
    &[
        &SESSIONS_ID,
        &SESSIONS_NODE,
        #[cfg(feature = "enterprise")]
        &SESSIONS_NAMESPACE,
    ],
);

/// The session `id` in `tenancy`, if it exists (for a reader: the kv plugin's locks).
pub fn lookup(
    tx: &dyn fsmhost_guest::Txn,
    tenancy: &Tenancy,
    id: &str,
) -> Result<Option<Session>, fsmhost_guest::Error> {
    SESSIONS_ID.get(tx, &(tenancy.clone(), id.to_string()))
}

/// What the catalog tells the kv plugin when a session ends (destroyed, or invalidated with
/// a check or its node): the kv plugin's `release-session` command releases (or, for the
/// `delete` behavior, deletes) every key the session holds and starts their lock-delay.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ReleaseSession {
    /// The session that ended.
    pub id: String,
    /// Its partition and namespace (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
    /// `release` or `delete`.
    pub behavior: String,
    /// Its lock-delay, in nanoseconds: its keys cannot be locked again for that long.
    pub lock_delay: u64,
}

/// The message the catalog sends with a [`ReleaseSession`]; the kv plugin registers the
/// command of this name.
pub static RELEASE_SESSION: fsmhost_guest::Message<ReleaseSession> =
    fsmhost_guest::Message::new("kv", RELEASE_SESSION_COMMAND);

/// The name of the kv plugin's command that takes a [`ReleaseSession`].
pub const RELEASE_SESSION_COMMAND: &str = "release-session";
