//! Consul's KV transactions (`PUT /v1/txn`, `agent/consul/state/txn.go`): up to 64 KV
//! operations run in order in one command, all or nothing.
//!
//! Every operation runs even after one fails, so that the client learns every failure at
//! once; if any failed, the command returns a `conflict` error whose message is the JSON
//! list of failures (`[{"OpIndex":0,"What":"..."}]`) and the transaction writes nothing.
//! A transaction of reads only runs as the query `txn-read` (no log entry), honouring the
//! request's consistency mode like any other read.
//!
//! `lock` and `unlock` are the locks of `PUT /v1/kv/<key>?acquire|release` (module
//! `locks`), failing with Consul's messages (a lock held by another session or under its
//! lock-delay, an unknown session, an unlock by a session that does not hold the lock).

use fsmhost_guest::{Ctx, Error, Tenancy, Txn};
use serde::{Deserialize, Serialize};

use crate::{
    CasRequest, DeleteCasRequest, DeleteRequest, DeleteTreeRequest, EDITION, Entry, KVS_ID, KeyIn,
    SetRequest, key_in,
};

/// The most operations one transaction may hold.
pub const MAX_OPS: usize = 64;

/// A KV verb (`api.KVOp`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Writes the key.
    Set,
    /// Writes the key if its ModifyIndex matches `index` (0: if it does not exist).
    Cas,
    /// Takes the key's lock for `session`.
    Lock,
    /// Releases the key's lock held by `session`.
    Unlock,
    /// Reads the key; fails if it does not exist.
    Get,
    /// Reads every key under the prefix.
    GetTree,
    /// Fails unless the key's ModifyIndex is `index`.
    CheckIndex,
    /// Fails unless the key's session is `session`.
    CheckSession,
    /// Fails if the key exists.
    CheckNotExists,
    /// Deletes the key.
    Delete,
    /// Deletes every key under the prefix.
    DeleteTree,
    /// Deletes the key if its ModifyIndex is `index`.
    DeleteCas,
}

impl Verb {
    /// Every verb with its name in Consul's API.
    pub const ALL: [(Verb, &'static str); 12] = [
        (Verb::Set, "set"),
        (Verb::Cas, "cas"),
        (Verb::Lock, "lock"),
        (Verb::Unlock, "unlock"),
        (Verb::Get, "get"),
        (Verb::GetTree, "get-tree"),
        (Verb::CheckIndex, "check-index"),
        (Verb::CheckSession, "check-session"),
        (Verb::CheckNotExists, "check-not-exists"),
        (Verb::Delete, "delete"),
        (Verb::DeleteTree, "delete-tree"),
        (Verb::DeleteCas, "delete-cas"),
    ];

    /// The verb named `name` in Consul's API.
    pub fn parse(name: &str) -> Option<Verb> {
        Verb::ALL.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    /// Whether the verb only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Verb::Get
                | Verb::GetTree
                | Verb::CheckIndex
                | Verb::CheckSession
                | Verb::CheckNotExists
        )
    }
}

/// One operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// What to do.
    pub verb: Verb,
    /// The key (a prefix for `get-tree` and `delete-tree`).
    pub key: String,
    /// The value for `set` and `cas`.
    #[serde(with = "fsmhost_guest::serde_bytes")]
    pub value: Vec<u8>,
    /// Flags for `set` and `cas`.
    pub flags: u64,
    /// The ModifyIndex for `cas`, `check-index` and `delete-cas`.
    pub index: u64,
    /// The session for `lock`, `unlock` and `check-session`.
    pub session: String,
    /// The key's partition and namespace (enterprise edition; OSS refuses any but the
    /// default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

impl Op {
    /// The key the operation names, in its resolved tenancy.
    fn target(&self) -> Result<KeyIn, Error> {
        Ok(key_in(&self.tenancy.clone().resolve(EDITION)?, &self.key))
    }
}

/// The `txn` command's and the `txn-read` query's argument.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// A failed operation (`structs.TxnError`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TxnError {
    /// Position of the operation in the request.
    pub op_index: usize,
    /// What went wrong.
    pub what: String,
}

/// Runs the operations; the results in order (values only for `get` and `get-tree`), or
/// the failures as a `conflict` error (see the module documentation).
fn run(
    ops: &[Op],
    mut op: impl FnMut(&Op, &mut Vec<Entry>) -> Result<Result<(), String>, Error>,
) -> Result<Vec<Entry>, Error> {
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (op_index, o) in ops.iter().enumerate() {
        if let Err(what) = op(o, &mut results)? {
            errors.push(TxnError { op_index, what });
        }
    }
    if errors.is_empty() {
        return Ok(results);
    }
    let list = serde_json_list(&errors);
    Err(Error::conflict(list))
}

fn serde_json_list(errors: &[TxnError]) -> String {
    serde_json::to_string(errors)
        .unwrap_or_else(|e| format!("[{{\"OpIndex\":0,\"What\":\"{e}\"}}]"))
}

/// The failures a `txn` error carries, if `e` is one.
pub fn failures(e: &Error) -> Option<Vec<TxnError>> {
    if e.kind != fsmhost_guest::ErrorKind::Conflict {
        return None;
    }
    serde_json::from_str(&e.message).ok()
}

fn without_value(mut e: Entry) -> Entry {
    e.value = Vec::new();
    e
}

/// A read operation.
fn read(tx: &dyn Txn, op: &Op, out: &mut Vec<Entry>) -> Result<Result<(), String>, Error> {
    let key = &op.key;
    let at = op.target()?;
    let entry = || KVS_ID.get(tx, &at);
    Ok(match op.verb {
        Verb::Get => match entry()? {
            Some(e) => {
                out.push(e);
                Ok(())
            }
            None => Err(format!("key {key:?} doesn't exist")),
        },
        Verb::GetTree => {
            for e in KVS_ID.iter_prefix(tx, &at)? {
                out.push(e?);
            }
            Ok(())
        }
        Verb::CheckIndex => match entry()? {
            None => Err(format!("failed to check index, key {key:?} doesn't exist")),
            Some(e) if e.modify_index != op.index => Err(format!(
                "failed index check for key {key:?}, current modify index {} != {}",
                e.modify_index, op.index
            )),
            Some(e) => {
                out.push(without_value(e));
                Ok(())
            }
        },
        Verb::CheckSession => match entry()? {
            None => Err(format!(
                "failed to check session, key {key:?} doesn't exist"
            )),
            Some(e)
                if !crate::locks::same_session(e.session.as_deref().unwrap_or(""), &op.session) =>
            {
                Err(format!(
                    "failed session check for key {key:?}, current session {:?} != {:?}",
                    e.session.as_deref().unwrap_or(""),
                    op.session
                ))
            }
            Some(e) => {
                out.push(without_value(e));
                Ok(())
            }
        },
        Verb::CheckNotExists => match entry()? {
            Some(_) => Err(format!("key {key:?} exists")),
            None => Ok(()),
        },
        other => Err(format!(
            "{other:?} is not a read; run it with the txn command"
        )),
    })
}

/// A write operation (reads go to [`read`]).
fn write(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    op: &Op,
    out: &mut Vec<Entry>,
) -> Result<Result<(), String>, Error> {
    let key = op.key.clone();
    let tenancy = op.tenancy.clone();
    let at = op.target()?;
    let wrote = |tx: &mut dyn Txn, ok: bool, out: &mut Vec<Entry>, stale: String| {
        if !ok {
            return Ok(Err(stale));
        }
        if let Some(e) = KVS_ID.get(tx, &at)? {
            out.push(without_value(e));
        }
        Ok(Ok(()))
    };
    match op.verb {
        Verb::Set => {
            let req = SetRequest {
                key,
                value: op.value.clone(),
                flags: op.flags,
                tenancy,
            };
            let ok = crate::set(tx, ctx, req)?;
            wrote(tx, ok, out, String::new())
        }
        Verb::Cas => {
            let req = CasRequest {
                key,
                value: op.value.clone(),
                flags: op.flags,
                index: op.index,
                tenancy,
            };
            let ok = crate::cas(tx, ctx, req)?;
            wrote(
                tx,
                ok,
                out,
                format!("failed to set key {:?}, index is stale", op.key),
            )
        }
        Verb::Lock | Verb::Unlock => {
            let run = if op.verb == Verb::Lock {
                crate::locks::lock
            } else {
                crate::locks::unlock
            };
            match run(tx, ctx, at.clone(), op.value.clone(), op.flags, &op.session)? {
                Ok(()) => wrote(tx, true, out, String::new()),
                Err(refused) => Ok(Err(refused.txn_message(&op.key))),
            }
        }
        Verb::Delete => crate::delete(tx, ctx, DeleteRequest { key, tenancy }).map(|_| Ok(())),
        Verb::DeleteTree => {
            let req = DeleteTreeRequest {
                prefix: key,
                tenancy,
            };
            crate::delete_tree(tx, ctx, req).map(|_| Ok(()))
        }
        Verb::DeleteCas => {
            let req = DeleteCasRequest {
                key,
                index: op.index,
                tenancy,
            };
            Ok(if crate::delete_cas(tx, ctx, req)? {
                Ok(())
            } else {
                Err(format!("failed to delete key {:?}, index is stale", op.key))
            })
        }
        _ => read(tx, op, out),
    }
}

/// `txn`: runs the operations in one command, all or nothing.
pub fn txn(tx: &mut dyn Txn, ctx: &Ctx, req: TxnRequest) -> Result<Vec<Entry>, Error> {
    check(&req)?;
    run(&req.ops, |op, out| write(tx, ctx, op, out))
}

/// `txn-read`: runs a transaction of reads only.
pub fn txn_read(tx: &dyn Txn, req: TxnRequest) -> Result<Vec<Entry>, Error> {
    check(&req)?;
    if let Some(w) = req.ops.iter().position(|o| !o.verb.is_read()) {
        return Err(Error::bad_request(format!(
            "operation {w} ({:?}) writes; txn-read runs reads only",
            req.ops[w].verb
        )));
    }
    run(&req.ops, |op, out| read(tx, op, out))
}

fn check(req: &TxnRequest) -> Result<(), Error> {
    if req.ops.len() > MAX_OPS {
        return Err(Error::bad_request(format!(
            "Transaction contains too many operations ({} > {MAX_OPS})",
            req.ops.len()
        )));
    }
    Ok(())
}
