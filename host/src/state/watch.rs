//! Watches: how a blocking read waits for the data it read to change.
//!
//! Each table has a channel carrying its stamp (the FSM index of its last change); a commit
//! sends on the channels of exactly the tables it changed, so a waiter wakes only when one of the
//! tables it read changed (Consul's memdb watches are finer, per radix node; per table keeps
//! a commit's cost proportional to the tables it touched). A separate channel is closed when
//! the store is abandoned (a restore replaced it, or the server is shutting down), waking
//! every waiter at once.

use std::time::Duration;
use tokio::sync::watch;

/// The senders behind every watch of one store.
pub(super) struct Notifier {
    tables: Vec<watch::Sender<u64>>,
    abandoned: watch::Sender<bool>,
}

impl Notifier {
    pub(super) fn new(tables: usize) -> Self {
        Notifier {
            tables: (0..tables).map(|_| watch::channel(0).0).collect(),
            abandoned: watch::channel(false).0,
        }
    }

    /// Wakes the watchers of table `t`: it changed at `index`.
    pub(super) fn changed(&self, t: usize, index: u64) {
        self.tables[t].send_replace(index);
    }

    /// Wakes every watcher, now and later: the store is no longer current.
    pub(super) fn abandon(&self) {
        self.abandoned.send_replace(true);
    }

    pub(super) fn is_abandoned(&self) -> bool {
        *self.abandoned.borrow()
    }

    pub(super) fn watch(&self, tables: impl IntoIterator<Item = usize>) -> WatchSet {
        let mut receivers: Vec<watch::Receiver<u64>> = Vec::new();
        for t in tables {
            let mut rx = self.tables[t].subscribe();
            // Only changes after this point count.
            rx.mark_unchanged();
            receivers.push(rx);
        }
        let mut abandoned = self.abandoned.subscribe();
        abandoned.mark_unchanged();
        WatchSet {
            tables: receivers,
            abandoned,
            already_abandoned: self.is_abandoned(),
        }
    }
}

/// Why [`WatchSet::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A watched table changed.
    Changed,
    /// The store was abandoned (replaced by a restore, or shut down): re-read from the new
    /// store, and expect the index to have moved, possibly backwards.
    Abandoned,
    /// The timeout passed with no change.
    TimedOut,
}

/// The tables one read touched, to wait on.
pub struct WatchSet {
    tables: Vec<watch::Receiver<u64>>,
    abandoned: watch::Receiver<bool>,
    already_abandoned: bool,
}

impl WatchSet {
    /// Waits until a watched table changes, the store is abandoned, or `timeout` passes.
    pub async fn wait(mut self, timeout: Duration) -> Wake {
        if self.already_abandoned {
            return Wake::Abandoned;
        }
        let changed = async {
            if self.tables.is_empty() {
                return std::future::pending::<()>().await;
            }
            let waits = self.tables.iter_mut().map(|rx| Box::pin(rx.changed()));
            // A closed sender (the store was dropped) also ends the wait.
            let _ = futures_select_all(waits).await;
        };
        tokio::select! {
            _ = self.abandoned.changed() => Wake::Abandoned,
            () = changed => Wake::Changed,
            () = tokio::time::sleep(timeout) => Wake::TimedOut,
        }
    }
}

/// Resolves when the first of `futures` does.
async fn futures_select_all<F: std::future::Future + Unpin>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}
