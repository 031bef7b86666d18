//! Applying log entries: the commands of one entry in one write transaction, in log
//! order, each at its own FSM index.
//!
//! Owns: the command loop of an entry ([`Fsm::apply_commands`]) and its retry
//! ([`Fsm::apply_log_entry`]), the plugin instances an entry's commands share, and the
//! rule that a command is applied by the plugin version in effect at its place in the log.
//!
//! Invariants:
//! - every command of an entry gets the next FSM index, whether it succeeds or fails; a
//!   failed command leaves no trace in the store (its savepoint is rolled back);
//! - a failure of this server's own ([`crate::plugin::CallError::Unavailable`]) applies nothing of the
//!   entry: the whole entry is tried again later on fresh instances, so the commands that
//!   ran before the failure run again exactly as they did (their instance history is a
//!   function of the log), and a retry that never succeeds stops the node instead of
//!   letting it diverge.

use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Fsm;
use super::outcome::{FsmError, Outcome};
use crate::plugin::{
    CallError, Instance, LoadedPlugin, MAX_MESSAGE_DEPTH, MAX_MESSAGES, PluginSet, Sent,
};
use crate::state::WriteTxn;
use std::sync::Arc;

/// How often an entry this server could not apply (no free instance slot) is tried again
/// before [`Fsm::apply_log_entry`] gives up.
const UNAVAILABLE_RETRIES: u32 = 50;
/// How long to wait before trying such an entry again.
const UNAVAILABLE_BACKOFF: Duration = Duration::from_millis(10);

/// A command as it travels in the raft log: which plugin, which command, its payload, and
/// the leader's clock when it accepted the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The plugin that owns the command.
    pub plugin: String,
    /// The command name.
    pub command: String,
    /// The command's payload (CBOR, opaque to the host).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The leader's wall clock, ms since the Unix epoch; the plugin's only clock.
    pub timestamp_ms: u64,
    /// The plugin version the command was written for (the one in effect on the leader
    /// when it accepted the command); absent in entries written before versions were
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The plugin instances kept across the commands of one log entry, one per plugin.
///
/// A kept instance changes the fuel the next command burns (the guest's heap and statics
/// carry over), so the scope must be one every server shares: the commands of one log
/// entry, applied in order, with new instances for every entry. A server that replays its
/// log then gives every command the same instance history as the leader did.
#[derive(Debug, Default)]
struct EntryInstances {
    kept: Vec<(String, Option<Instance>)>,
}

/// One log entry being applied ([`Fsm::apply_entry`]): its write transaction, the plugin
/// set in effect, the instances kept from one command to the next, and the FSM index of
/// the last command applied so far.
pub struct EntryTxn<'a> {
    plugins: &'a PluginSet,
    txn: WriteTxn<'a>,
    instances: EntryInstances,
    last: u64,
}

impl EntryTxn<'_> {
    /// The FSM index the next command takes.
    pub fn next_index(&self) -> u64 {
        self.last + 1
    }

    /// Applies the command `entry` at FSM `index`, above every index applied before: runs
    /// its plugin's command in the entry's transaction; a failed command leaves no trace.
    /// Returns its result bytes or its error (the command counts as applied either way,
    /// unless the error is retryable: then it may be tried again at the same index).
    pub fn apply(&mut self, index: u64, entry: &Entry) -> Result<Vec<u8>, FsmError> {
        if index <= self.last {
            return Err(FsmError::OutOfOrder {
                index,
                last: self.last,
            });
        }
        self.txn.set_stamp(index);
        let result = match self.plugins.get(&entry.plugin) {
            None => Err(FsmError::UnknownPlugin(entry.plugin.clone())),
            Some(plugin) => match written_for_newer(entry, &plugin.description().version) {
                Some(e) => Err(e),
                None => self.run_with_messages(plugin, entry),
            },
        };
        if !matches!(&result, Err(e) if e.is_retryable()) {
            self.last = index;
        }
        result
    }
}

impl EntryTxn<'_> {
    /// Runs the command of `entry` on `plugin`, then delivers the messages it sent (see
    /// `state.send` in the WIT): all of it, or nothing, under one savepoint.
    fn run_with_messages(
        &mut self,
        plugin: &Arc<LoadedPlugin>,
        entry: &Entry,
    ) -> Result<Vec<u8>, FsmError> {
        let savepoint = self.txn.savepoint();
        let mut sent = Vec::new();
        let result = plugin
            .apply_kept(
                self.instances.for_plugin(plugin.name()),
                &mut self.txn,
                &entry.command,
                &entry.payload,
                entry.timestamp_ms,
                &mut sent,
            )
            .and_then(|out| {
                self.deliver(plugin.name(), sent, entry.timestamp_ms, 0, &mut 0)?;
                Ok(out)
            });
        match result {
            Ok(_) => self.txn.release(savepoint),
            Err(_) => self.txn.rollback_to(savepoint),
        }
        result.map_err(FsmError::from)
    }

    /// Delivers the messages `sender` sent, in order, each followed by the messages it sent
    /// (depth first), in the entry's transaction at the sender's index, on the entry's
    /// instance of each plugin. A message to a plugin the set does not have is dropped.
    /// `delivered` counts the messages of the whole command.
    fn deliver(
        &mut self,
        sender: &str,
        sent: Vec<Sent>,
        timestamp_ms: u64,
        depth: usize,
        delivered: &mut usize,
    ) -> Result<(), CallError> {
        if sent.is_empty() {
            return Ok(());
        }
        if depth >= MAX_MESSAGE_DEPTH {
            return Err(CallError::Messages {
                plugin: sender.to_string(),
                reason: format!("its messages sent messages more than {MAX_MESSAGE_DEPTH} deep"),
            });
        }
        let plugins = self.plugins;
        for m in sent {
            *delivered += 1;
            if *delivered > MAX_MESSAGES {
                return Err(CallError::Messages {
                    plugin: sender.to_string(),
                    reason: format!(
                        "a command and its messages sent more than {MAX_MESSAGES} messages"
                    ),
                });
            }
            let Some(receiver) = plugins.get(&m.plugin) else {
                continue;
            };
            let mut more = Vec::new();
            receiver.apply_kept(
                self.instances.for_plugin(receiver.name()),
                &mut self.txn,
                &m.command,
                &m.payload,
                timestamp_ms,
                &mut more,
            )?;
            self.deliver(receiver.name(), more, timestamp_ms, depth + 1, delivered)?;
        }
        Ok(())
    }
}

impl EntryInstances {
    fn for_plugin(&mut self, name: &str) -> &mut Option<Instance> {
        let at = match self.kept.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.kept.push((name.to_string(), None));
                self.kept.len() - 1
            }
        };
        &mut self.kept[at].1
    }
}

impl Fsm {
    /// Applies the plugin commands of one log entry, in order, each at the next FSM index,
    /// in one write transaction (see [`Fsm::apply_entry`]); their outcomes in the same
    /// order. Fails, applying nothing, with the first retryable error (this server's own
    /// failure; see [`Fsm::apply_log_entry`]).
    pub fn apply_commands(&self, commands: &[Entry]) -> Result<Vec<Outcome>, FsmError> {
        self.apply_entry(|txn| {
            commands
                .iter()
                .map(|command| {
                    let index = txn.next_index();
                    match txn.apply(index, command) {
                        Err(e) if e.is_retryable() => Err(e),
                        result => Ok(Outcome::new(index, result)),
                    }
                })
                .collect()
        })
    }

    /// [`Fsm::apply_commands`] for the log entry at raft index `raft_index`, tried again a
    /// while when this server cannot run it now (every instance slot busy). The wait
    /// happens between attempts, outside any transaction, without blocking the thread.
    /// Gives up with a message naming the entry when it never succeeds.
    pub async fn apply_log_entry(
        &self,
        raft_index: u64,
        commands: &[Entry],
    ) -> Result<Vec<Outcome>, String> {
        let mut attempt = 0;
        loop {
            match self.apply_commands(commands) {
                Ok(outcomes) => return Ok(outcomes),
                Err(e) if attempt < UNAVAILABLE_RETRIES => {
                    attempt += 1;
                    tracing::debug!(target: "agent.server.fsm",
                        "log entry {raft_index} could not be applied now, retrying: {e}");
                    tokio::time::sleep(UNAVAILABLE_BACKOFF).await;
                }
                Err(e) => {
                    return Err(format!(
                        "log entry {raft_index} could not be applied on this server after \
                         {UNAVAILABLE_RETRIES} attempts: {e}"
                    ));
                }
            }
        }
    }

    /// Applies the command at `index` as a log entry of its own (see [`Fsm::apply_entry`]).
    /// Returns the command's result bytes, or its error (the command is applied either way,
    /// unless the error is retryable).
    pub fn apply(&self, index: u64, entry: &Entry) -> Result<Vec<u8>, FsmError> {
        let applied: Result<_, std::convert::Infallible> =
            self.apply_entry(|txn| Ok(txn.apply(index, entry)));
        match applied {
            Ok(result) => result,
        }
    }

    /// Applies the commands of one log entry in one write transaction: `f` applies each
    /// with [`EntryTxn::apply`], in order. When `f` returns `Ok`, the commands it applied
    /// are committed at once (readers and watchers see the whole entry or none of it) and
    /// the last applied index moves to the last of them; when it returns `Err`, nothing
    /// changes. Commands share one plugin instance per plugin, kept from one command to the
    /// next.
    pub fn apply_entry<R, E>(
        &self,
        f: impl FnOnce(&mut EntryTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let store = self.store();
        let plugins = self.plugins();
        let first = self.last_applied();
        let mut entry = EntryTxn {
            plugins: &plugins,
            txn: store.write(first + 1),
            instances: EntryInstances::default(),
            last: first,
        };
        let result = f(&mut entry)?;
        let last = entry.last;
        if last > first {
            entry.txn.commit();
            self.last_applied.store(last, Ordering::Release);
        }
        Ok(result)
    }
}

/// The refusal of an entry written for a newer version of its plugin than `running`.
/// Versions that do not parse as semantic versions are compared as equal only when equal
/// text, and never refused.
fn written_for_newer(entry: &Entry, running: &str) -> Option<FsmError> {
    let written = entry.version.as_deref()?;
    let (w, r) = (
        semver::Version::parse(written).ok()?,
        semver::Version::parse(running).ok()?,
    );
    (w > r).then(|| FsmError::WrittenForNewer {
        plugin: entry.plugin.clone(),
        written: written.to_string(),
        running: running.to_string(),
    })
}
