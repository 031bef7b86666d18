//! What the kv commands and queries take and answer: Consul's request shapes
//! (`KVSSet`, `KVSCAS`, ...), as the guest SDK encodes them.

use fsmhost_guest::{Tenancy, serde_bytes};
use serde::{Deserialize, Serialize};

use crate::Entry;

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
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ReapRequest {
    /// Tombstones with an index up to this one are dropped.
    pub index: u64,
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
