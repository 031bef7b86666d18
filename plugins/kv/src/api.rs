//! What the kv commands and queries take and answer: Consul's request shapes
//! (`KVSSet`, `KVSCAS`, ...), as the guest SDK encodes them, and the handle of every
//! command and query (its name, request and result types).

use fsmhost_guest::{Command, Query, Tenancy, serde_bytes};
use serde::{Deserialize, Serialize};

use crate::txn::{self, TxnRequest};
use crate::{Entry, gc, locks, ops};
use fsmhost_schema_sessions::{RELEASE_SESSION_COMMAND, ReleaseSession};

/// `set`: writes a key; always `true`.
pub static SET: Command<SetRequest, bool> = Command::new("set", ops::set);
/// `cas`: writes a key if its ModifyIndex matches; whether it did.
pub static CAS: Command<CasRequest, bool> = Command::new("cas", ops::cas);
/// `delete`: removes a key; always `true`.
pub static DELETE: Command<DeleteRequest, bool> = Command::new("delete", ops::delete);
/// `delete-cas`: removes a key if its ModifyIndex matches; whether it did (or the key was
/// already gone).
pub static DELETE_CAS: Command<DeleteCasRequest, bool> =
    Command::new("delete-cas", ops::delete_cas);
/// `delete-tree`: removes every key under a prefix; always `true`.
pub static DELETE_TREE: Command<DeleteTreeRequest, bool> =
    Command::new("delete-tree", ops::delete_tree);
/// `reap-tombstones`: drops up to `limit` tombstones at or below an index, then (once none
/// is left there) the marks it covered; how many tombstones it dropped. The leader's tick
/// proposes it (module `gc`).
pub static REAP_TOMBSTONES: Command<ReapRequest, u64> =
    Command::new("reap-tombstones", gc::reap_tombstones);
/// `acquire`: locks a key for a session and writes it (`?acquire=`); whether it did
/// (`false`: another session holds the lock, or the key's lock-delay has not ended).
pub static ACQUIRE: Command<LockRequest, bool> = Command::new("acquire", locks::acquire);
/// `release`: unlocks a key its session holds and writes it (`?release=`); whether it did
/// (`false`: the session does not hold the lock).
pub static RELEASE: Command<LockRequest, bool> = Command::new("release", locks::release);
/// `release-session`: the catalog ended a session (its message
/// [`fsmhost_schema_sessions::RELEASE_SESSION`]); releases or deletes the keys it held and
/// starts their lock-delay; how many keys.
pub static RELEASE_SESSION: Command<ReleaseSession, u64> =
    Command::new(RELEASE_SESSION_COMMAND, locks::release_session);
/// `txn`: a KV transaction (see [`crate::txn`]); the entries its operations answer.
pub static TXN: Command<TxnRequest, Vec<Entry>> = Command::new("txn", txn::txn);
/// `get`: one entry, if the key exists.
pub static GET: Query<GetArgs, Option<Entry>> = Query::new("get", ops::get);
/// `list`: the entries under a prefix, with the prefix's index.
pub static LIST: Query<ListArgs, ListResult> = Query::new("list", ops::list);
/// `keys`: the keys under a prefix (cut at a separator), with the prefix's index.
pub static KEYS: Query<KeysArgs, KeysResult> = Query::new("keys", ops::keys);
/// `txn-read`: a KV transaction of reads only, run as a query.
pub static TXN_READ: Query<TxnRequest, Vec<Entry>> = Query::new("txn-read", txn::txn_read);

/// `set`: writes a key (Consul's `KVSSet`).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct SetRequest {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Flags.
    #[serde(default)]
    pub flags: u64,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `cas`: writes a key if its ModifyIndex matches (0: only if it does not exist).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct CasRequest {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Flags.
    #[serde(default)]
    pub flags: u64,
    /// The ModifyIndex the key must have; 0 means the key must not exist.
    pub index: u64,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `acquire` and `release`: a key locked or unlocked by a session, and the value (and
/// flags) written with it (Consul's `KVSLock`, `KVSUnlock`).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct LockRequest {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Flags.
    #[serde(default)]
    pub flags: u64,
    /// The session taking or giving up the lock.
    pub session: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `delete`: removes a key.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DeleteRequest {
    /// The key.
    pub key: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `delete-cas`: removes a key if its ModifyIndex matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DeleteCasRequest {
    /// The key.
    pub key: String,
    /// The ModifyIndex the key must have; 0 never deletes.
    pub index: u64,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `delete-tree`: removes every key under a prefix.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DeleteTreeRequest {
    /// The prefix; empty deletes everything.
    pub prefix: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `reap-tombstones`: drops tombstones at or below an index (Consul's `TombstoneReap`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReapRequest {
    /// Tombstones with an index up to this one are dropped.
    pub index: u64,
    /// At most this many are dropped (the oldest first). A payload without it (before
    /// 0.2.0) drops them all.
    #[serde(default = "no_limit")]
    pub limit: u64,
}

fn no_limit() -> u64 {
    u64::MAX
}

impl Default for ReapRequest {
    fn default() -> Self {
        ReapRequest {
            index: 0,
            limit: no_limit(),
        }
    }
}

/// `get` arguments.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct GetArgs {
    /// The key.
    pub key: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `list` arguments.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ListArgs {
    /// The prefix.
    pub prefix: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `list` result.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Entries under the prefix, in key order.
    pub entries: Vec<Entry>,
    /// Consul's index for the prefix: it never goes backwards after a delete.
    pub index: u64,
}

/// `keys` arguments.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct KeysArgs {
    /// The prefix.
    pub prefix: String,
    /// Keys are cut after the first separator following the prefix, and deduplicated.
    #[serde(default)]
    pub separator: Option<String>,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `keys` result.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct KeysResult {
    /// The keys (or key prefixes up to the separator), in order.
    pub keys: Vec<String>,
    /// Consul's index for the prefix, as for `list`.
    pub index: u64,
}
