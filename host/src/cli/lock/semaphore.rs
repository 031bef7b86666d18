//! The semaphore of `fsmhost lock -n N` (Consul's `api/semaphore.go`): one contender key
//! per session (`prefix/<session>`, acquired with it) and `prefix/.lock` holding
//! `{"Limit", "Holders"}`, changed with check-and-set.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Method;
use serde::{Deserialize, Serialize};

use super::client::{Entry, Http, kv_path};
use super::{Held, LOCK_KEY, left, past};

/// Consul's flag value on the semaphore's keys, so its tools recognise them.
const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;

/// The semaphore's lock key: Consul's `semaphoreLock`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SemaphoreLock {
    limit: u32,
    holders: BTreeMap<String, bool>,
}

fn recurse(prefix: &str) -> String {
    format!("{}?recurse", kv_path(&format!("{prefix}/")))
}

/// Consul's `Semaphore.Acquire`: a contender key for the session, then a place among the
/// holders of `prefix/.lock` (check-and-set), waiting while it is full. `None` on timeout.
pub(super) async fn acquire(
    http: &Http,
    prefix: &str,
    session: &str,
    limit: u32,
    deadline: Option<Instant>,
) -> Result<Option<Held>, String> {
    let contender = format!("{prefix}/{session}");
    let claim = format!(
        "{}?acquire={session}&flags={SEMAPHORE_FLAG}",
        kv_path(&contender)
    );
    if !http.kv_write(&claim, Vec::new()).await? {
        return Err(format!("failed to make contender entry {contender}"));
    }
    let held = Held::Semaphore {
        prefix: prefix.to_string(),
        contender,
    };
    let mut index = 0;
    loop {
        if past(deadline) {
            release(http, session, &held).await;
            return Ok(None);
        }
        let (entries, next) = http
            .entries_within(&recurse(prefix), index, left(deadline))
            .await?;
        index = next;
        if past(deadline) {
            release(http, session, &held).await;
            return Ok(None);
        }
        let (mut lock, modify) = read_lock(&entries, prefix, limit)?;
        if lock.limit != limit {
            return Err(format!(
                "semaphore limit conflict (lock: {}, local: {limit})",
                lock.limit
            ));
        }
        // Holders whose contender key no longer has their session are gone.
        let live: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.session.as_deref())
            .collect();
        lock.holders.retain(|s, _| live.contains(&s.as_str()));
        if lock.holders.contains_key(session) {
            return Ok(Some(held));
        }
        if lock.holders.len() >= limit as usize {
            continue; // full: wait for a change under the prefix
        }
        lock.holders.insert(session.to_string(), true);
        if write_lock(http, prefix, &lock, modify).await? {
            return Ok(Some(held));
        }
    }
}

/// Whether `session` is among the holders (one blocking read from `index`), and the index
/// to wait from next.
pub(super) async fn holds(
    http: &Http,
    prefix: &str,
    session: &str,
    index: u64,
) -> Result<(bool, u64), String> {
    let key = format!("{prefix}/{LOCK_KEY}");
    let (entries, index) = http.entries(&kv_path(&key), index).await?;
    let (lock, _) = read_lock(&entries, prefix, 0)?;
    Ok((lock.holders.contains_key(session), index))
}

/// Leaves the holders (check-and-set, a few tries) and deletes the contender key.
pub(super) async fn release(http: &Http, session: &str, held: &Held) {
    let Held::Semaphore { prefix, contender } = held else {
        return;
    };
    for _ in 0..10 {
        let Ok((entries, _)) = http.entries(&recurse(prefix), 0).await else {
            break;
        };
        let Ok((mut lock, modify)) = read_lock(&entries, prefix, 0) else {
            break;
        };
        if lock.holders.remove(session).is_none() || modify == 0 {
            break;
        }
        if let Ok(true) = write_lock(http, prefix, &lock, modify).await {
            break;
        }
    }
    let _ = http
        .call(Method::DELETE, &kv_path(contender), Vec::new())
        .await;
}

/// The semaphore's lock entry under `prefix` (a new one of `limit` when there is none)
/// and its modify index (0: none, for a create-only check-and-set).
fn read_lock(entries: &[Entry], prefix: &str, limit: u32) -> Result<(SemaphoreLock, u64), String> {
    let key = format!("{prefix}/{LOCK_KEY}");
    match entries.iter().find(|e| e.key == key) {
        None => Ok((
            SemaphoreLock {
                limit,
                holders: BTreeMap::new(),
            },
            0,
        )),
        Some(e) => {
            let raw = match &e.value {
                Some(v) => B64
                    .decode(v)
                    .map_err(|e| format!("the lock's value is not base64: {e}"))?,
                None => Vec::new(),
            };
            let lock = serde_json::from_slice(&raw)
                .map_err(|e| format!("{key} is not a semaphore lock: {e}"))?;
            Ok((lock, e.modify_index))
        }
    }
}

async fn write_lock(
    http: &Http,
    prefix: &str,
    lock: &SemaphoreLock,
    modify: u64,
) -> Result<bool, String> {
    let body = serde_json::to_vec(lock).map_err(|e| e.to_string())?;
    let path = format!(
        "{}?cas={modify}&flags={SEMAPHORE_FLAG}",
        kv_path(&format!("{prefix}/{LOCK_KEY}"))
    );
    http.kv_write(&path, body).await
}
