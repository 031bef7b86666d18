//! A running server (`fsmhost agent`): its identity and data dir, raft, the FSM, and the two
//! listeners (server RPC on `ports.server`, the HTTP API on `ports.http`), from start to a
//! graceful stop.
//!
//! Owns: start-up order and shutdown. The pieces it wires together live beside it:
//! - [`ops`]: writes and reads as the leader does them, or forwarded to it;
//! - [`batch`]: the leader's proposer, which puts concurrent writes into one log entry;
//! - [`cluster`]: discovery, bootstrap (`bootstrap_expect`), joining, leaving;
//! - [`election`]: when a follower campaigns (pre-vote) and when a leader steps down;
//! - [`autopilot`]: the leader's server health, promotions and dead-server cleanup;
//! - [`rpc`]: the server-port routes (raft RPCs, forwarding, joins);
//! - [`snapshots`]: when raft snapshots are taken, log compaction, user save and restore;
//! - [`raft_watch`]: leader changes, and a raft that stopped on a storage error;
//! - [`http`]: the operators' HTTP API;
//! - [`web`]: the HTTP plumbing both listeners share.
//!
//! Boundaries: the server holds no plugin-specific code; a plugin's commands and queries
//! are names and bytes here.

pub mod acl;
pub mod autopilot_runner;
pub mod batch;
pub mod cluster;
pub mod election;
pub mod http;
mod identity;
pub mod installs;
pub mod ops;
pub mod raft_gate;
pub mod raft_watch;
pub mod rpc;
pub mod snapshot_jobs;
pub mod timers;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

use crate::tls::Tls;
use tokio::sync::watch;

use crate::config::Config;
use crate::fsm::Fsm;
use crate::plugin::{PluginSet, Runtime, RuntimeConfig};
use crate::raft::depot::{self, Depot};
use crate::raft::log_store::{self, LogStore, OpenMode};
use crate::raft::network::{Acks, Network, RpcClient};
use crate::raft::state_machine::StateMachine;
use crate::raft::{NodeInfo, Raft};
use crate::snapshot::blobs::Blobs;
use crate::snapshot::store::SnapshotStore;
use identity::{node_identity, random_node_id, write_node_id};

/// Why a server could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data dir could not be used.
    #[error("data_dir {path}: {reason}")]
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The raft log could not be opened.
    #[error(transparent)]
    Log(#[from] crate::raft::log_store::OpenError),
    /// The plugins could not be loaded.
    #[error("loading plugins: {0}")]
    Plugins(String),
    /// A port could not be bound.
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Which listener.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// openraft refused to start.
    #[error("starting raft: {0}")]
    Raft(String),
    /// The snapshots on disk cannot give this server its state.
    #[error("{0}")]
    Snapshot(String),
    /// A TLS file could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Raft stopped while the server ran (a storage error): the server stopped too.
    #[error("{0}")]
    RaftStopped(String),
}

/// Everything the handlers of one server share.
pub struct Node {
    /// This node's raft id.
    pub id: u64,
    /// This node's addresses and name.
    pub info: NodeInfo,
    /// The configuration.
    pub config: Config,
    /// Tokens resolved for requests, until the ACL state changes.
    pub acl_cache: acl::Cache,
    /// Raft.
    pub raft: Raft,
    /// The state machine (shared with raft's state machine worker).
    pub fsm: Arc<Fsm>,
    /// The log store (for `has_state`).
    pub log: LogStore,
    /// The client for server-to-server calls.
    pub client: RpcClient,
    /// Discovery and membership work.
    pub cluster: cluster::Cluster,
    /// When each peer last answered this server's replication (while it leads).
    pub acks: Acks,
    /// The applied index this server's reads wait for while it leads.
    pub read_floor: ops::ReadFloor,
    /// Autopilot's latest judgement (while this server leads).
    pub autopilot: autopilot_runner::Autopilot,
    /// The proposer of writes (used while this server leads).
    pub batcher: batch::Batcher,
    /// Raft snapshots on disk, shared with the state machine.
    pub snapshots: Arc<Depot>,
    /// One snapshot at a time (the policy's and operators' saves).
    pub snapshot_lock: tokio::sync::Mutex<()>,
    /// A dev server's temporary snapshot directory, removed when the server stops.
    _dev_snapshots: Option<tempfile::TempDir>,
    /// The origin of the moments below (a monotonic clock: wall-clock steps must not
    /// look like a leader's silence or its presence).
    clock_origin: std::time::Instant,
    /// When this node last heard from a leader.
    last_contact: Moment,
    /// When this node last started an election or granted a pre-vote (`election`).
    last_campaign: Moment,
    /// Wakes the election driver for an early pre-vote (`election::answer` refused a peer
    /// whose log is behind this server's, after its leader went silent).
    campaign_now: tokio::sync::Notify,
    /// Turns true when the server should stop.
    shutdown: watch::Sender<bool>,
}

/// A moment on a node's monotonic clock, shared between tasks: milliseconds since the
/// node's clock origin, plus one (0: never).
#[derive(Default)]
struct Moment(AtomicU64);

impl Moment {
    fn set(&self, origin: std::time::Instant) {
        self.0
            .store(origin.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }

    fn since(&self, origin: std::time::Instant) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            t => {
                let now = origin.elapsed().as_millis() as u64 + 1;
                Some(Duration::from_millis(now.saturating_sub(t)))
            }
        }
    }
}

impl Node {
    /// Records that a leader contacted this node now.
    pub fn touch_leader_contact(&self) {
        self.last_contact.set(self.clock_origin);
    }

    /// Time since a leader last contacted this node (zero on the leader itself; `None` if
    /// never).
    pub fn last_contact(&self) -> Option<Duration> {
        if self.is_leader() {
            return Some(Duration::ZERO);
        }
        self.last_contact.since(self.clock_origin)
    }

    /// Records that this node starts an election, or grants a pre-vote, now.
    pub fn note_campaign(&self) {
        self.last_campaign.set(self.clock_origin);
    }

    /// Time since this node last started an election or granted a pre-vote (`None` if
    /// never).
    pub fn last_campaign(&self) -> Option<Duration> {
        self.last_campaign.since(self.clock_origin)
    }

    /// Time since a leader last contacted this node, or since the process started if none
    /// has yet: a server that just started may be about to hear from a leader.
    pub fn last_contact_or_start(&self) -> Duration {
        self.last_contact()
            .unwrap_or_else(|| self.clock_origin.elapsed())
    }

    /// Whether this node believes it is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The current leader's id and addresses, if known.
    pub fn leader(&self) -> Option<(u64, NodeInfo)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let info = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, info))
    }

    /// The current raft membership (voters, learners and their addresses).
    pub fn membership(&self) -> openraft::Membership<u64, NodeInfo> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    /// Whether `ip` is the address of a server in the raft configuration.
    pub fn is_member_address(&self, ip: std::net::IpAddr) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().nodes().any(|(_, n)| {
            n.rpc_addr
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip() == ip)
        })
    }

    /// Asks the server to stop (what SIGTERM does).
    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// A receiver that turns true when the server stops.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

fn raft_config(config: &Config) -> Result<openraft::Config, StartError> {
    let t = config.timers;
    let c = openraft::Config {
        cluster_name: "fsmhost".to_string(),
        heartbeat_interval: t.heartbeat.as_millis() as u64,
        // Elections are started by `election::run` (pre-vote first), never by openraft's
        // own timer. What openraft still takes from these: `election_timeout_max` is how
        // long a server refuses other candidates after its leader last contacted it (its
        // leader lease), which `RaftTimers::vote_lease` sets; the minimum only has to be
        // below it.
        enable_elect: false,
        election_timeout_min: (t.vote_lease() / 2).as_millis() as u64,
        election_timeout_max: t.vote_lease().as_millis() as u64,
        install_snapshot_timeout: 10_000,
        // Snapshots are taken by `snapshot_jobs::run_policy` on Consul's schedule
        // (raft_snapshot_threshold checked every raft_snapshot_interval), and the log is
        // compacted by it too (raft_trailing_logs), so openraft does neither on its own.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        purge_batch_size: 1,
        ..Default::default()
    };
    c.validate().map_err(|e| StartError::Raft(e.to_string()))
}

/// Loads `plugins` (or the bundled set when none are named) with the configured limits
/// (the runtime is kept: it loads plugins installed later),
/// caching compiled artifacts in the configured `plugin_cache_dir` so a restart does not
/// compile again. A file that cannot be read or loaded is an error naming it.
fn load_plugins(config: &Config) -> Result<(Arc<Runtime>, PluginSet), StartError> {
    let runtime = Runtime::new(RuntimeConfig {
        limits: config.plugin_limits,
        cache_dir: config.plugin_cache_dir.clone(),
    })
    .map_err(|e| StartError::Plugins(e.to_string()))?;
    let runtime = Arc::new(runtime);
    if config.plugins.is_empty() {
        let set = runtime
            .load_bundled()
            .map_err(|e| StartError::Plugins(e.to_string()))?;
        return Ok((runtime, set));
    }
    let mut loaded = Vec::new();
    for path in &config.plugins {
        let bytes = std::fs::read(path)
            .map_err(|e| StartError::Plugins(format!("{}: {e}", path.display())))?;
        let plugin = runtime
            .load(&path.display().to_string(), &bytes)
            .map_err(|e| StartError::Plugins(e.to_string()))?;
        tracing::info!(target: "agent.plugin", "loaded plugin: name={} version={} edition={} path={}",
            plugin.description().name, plugin.description().version,
            plugin.description().edition, path.display());
        loaded.push(plugin);
    }
    let set = PluginSet::new(loaded).map_err(|e| StartError::Plugins(e.to_string()))?;
    Ok((runtime, set))
}

/// Restores the FSM from the newest usable snapshot, and checks that the log continues
/// where it ends: a log compacted past the snapshot (its newest snapshot lost or damaged)
/// cannot give this server its state, and starting without it would diverge.
fn recover(
    fsm: &Fsm,
    snapshots: &SnapshotStore,
    log: &LogStore,
) -> Result<Option<crate::snapshot::state_file::StateHeader>, StartError> {
    let recovered = depot::recover(fsm, snapshots)
        .map_err(|e| StartError::Snapshot(format!("restoring a snapshot: {e}")))?;
    let snapshot_index = recovered
        .as_ref()
        .and_then(|h| h.last_log_id)
        .map_or(0, |l| l.index);
    if let Some(purged) = log.last_purged()
        && purged.index > snapshot_index
    {
        return Err(StartError::Snapshot(format!(
            "the raft log in {} was compacted up to index {}, but the newest usable snapshot \
             in {} ends at index {snapshot_index}: this server cannot rebuild its state. \
             Move its data_dir aside and start it empty to receive a snapshot from the leader",
            log.path().display(),
            purged.index,
            snapshots.dir().display(),
        )));
    }
    Ok(recovered)
}

async fn bind_optional(
    addr: Option<std::net::SocketAddr>,
    what: &'static str,
) -> Result<Option<TcpListener>, StartError> {
    match addr {
        Some(addr) => bind(addr, what).await.map(Some),
        None => Ok(None),
    }
}

/// A TLS role's files, read (`None` when the role has no TLS).
fn load_tls(
    role: &str,
    settings: &Option<crate::tls::TlsSettings>,
) -> Result<Option<Arc<Tls>>, StartError> {
    match settings {
        Some(s) => Ok(Some(Tls::load(role, s.clone())?)),
        None => Ok(None),
    }
}

/// On SIGHUP (Consul's reload signal), reads every TLS role's certificates and keys
/// again; a role whose files fail keeps its current ones, and the log says why. Handled
/// even without TLS, so a stray SIGHUP does not stop the server.
async fn reload_on_hangup(roles: Vec<Arc<Tls>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!(target: "agent", "cannot handle SIGHUP: TLS files will not be reloaded");
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::info!(target: "agent", "Caught signal: hangup; reloading TLS certificates");
        if roles.is_empty() {
            tracing::info!(target: "agent", "nothing to reload: TLS is not configured");
        }
        for tls in &roles {
            match tls.reload() {
                Ok(()) => tracing::info!(target: "agent", "reloaded {}", tls.role()),
                Err(e) => tracing::error!(target: "agent",
                    "reloading {} failed, keeping its current certificates: {e}", tls.role()),
            }
        }
    }
}

async fn bind(addr: std::net::SocketAddr, what: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind {
        addr,
        what,
        reason: e.to_string(),
    })
}

/// Starts a server and runs it until `stop` resolves or a leave completes; then shuts down
/// gracefully: stops accepting, finishes in-flight requests, stops raft (every log write
/// was already committed durably).
pub async fn run(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    crate::metrics::set_prefix(&config.metrics_prefix);
    let (id, log) = match &config.data_dir {
        Some(dir) => {
            let (id, mode) = node_identity(dir)?;
            let (log, backend) =
                log_store::open_dir(&dir.join("raft"), id, mode, &config.raft_logstore)?;
            tracing::info!(target: "agent.server.raft", "raft log: backend={} path={}",
                backend.name(), log.path().display());
            if mode == OpenMode::Create {
                write_node_id(dir, id)?;
            }
            (id, log)
        }
        None => {
            let id = random_node_id().map_err(|reason| StartError::DataDir {
                path: PathBuf::from(":memory:"),
                reason,
            })?;
            (id, LogStore::in_memory(id)?)
        }
    };
    let (runtime, plugins) = load_plugins(&config)?;
    let fsm = Arc::new(Fsm::new(plugins).with_runtime(runtime));
    // Raft's snapshots and restore blobs: under data_dir/raft, or a temporary directory
    // for a dev server.
    let (raft_dir, dev_snapshots) = match &config.data_dir {
        Some(dir) => (dir.join("raft"), None),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("fsmhost-dev-")
                .tempdir()
                .map_err(|e| StartError::DataDir {
                    path: std::env::temp_dir(),
                    reason: format!("a temporary snapshot directory: {e}"),
                })?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let rpc_tls = load_tls("tls.internal_rpc", &config.tls_rpc)?;
    let https_tls = load_tls("tls.https", &config.tls_https)?;
    let hangup = tokio::spawn(reload_on_hangup(
        rpc_tls.iter().chain(&https_tls).cloned().collect(),
    ));
    let client = match &rpc_tls {
        Some(tls) => RpcClient::with_tls(tls)?,
        None => RpcClient::new(),
    };
    let acks = Acks::default();
    let snapshot_error = |e: crate::snapshot::SnapshotError| StartError::Snapshot(e.to_string());
    let snapshots = Arc::new(Depot::new(
        SnapshotStore::open(raft_dir.join("snapshots"), config.snapshots.retain)
            .map_err(snapshot_error)?,
        Blobs::open(raft_dir.join("blobs")).map_err(snapshot_error)?,
        client.clone(),
    ));
    let recovered = recover(&fsm, &snapshots.store, &log)?;

    let verifier = config
        .raft_logstore
        .verification
        .then(|| Arc::new(crate::raft::verifier::Verifier::default()));
    let raft = Raft::new(
        id,
        Arc::new(raft_config(&config)?),
        Network {
            id,
            client: client.clone(),
            acks: acks.clone(),
        },
        log.clone(),
        {
            let sm = StateMachine::new(fsm.clone(), snapshots.clone(), recovered.as_ref());
            match &verifier {
                Some(v) => sm.with_verifier(v.clone()),
                None => sm,
            }
        },
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    // The ports are bound only now that raft has replayed the log (seconds, for a long
    // one): bound earlier, the kernel would accept connections nobody served meanwhile,
    // and clients and peers would wait out their timeouts instead of being refused and
    // trying another server (seen in the nemesis runs as a client-timeout-long stall
    // after a killed server restarted).
    let rpc_listener = bind(config.rpc_bind, "ports.server").await?;
    let http_listener = bind_optional(config.http_bind, "ports.http").await?;
    let https_listener = bind_optional(config.https_bind, "ports.https").await?;
    let info = NodeInfo {
        name: config.node_name.clone(),
        rpc_addr: config.rpc_advertise.to_string(),
        http_addr: http_listener
            .as_ref()
            .or(https_listener.as_ref())
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default(),
    };
    let (shutdown, _) = watch::channel(false);
    let node = Arc::new(Node {
        id,
        info: info.clone(),
        cluster: cluster::Cluster::new(id, info.clone()),
        acks,
        read_floor: ops::ReadFloor::default(),
        autopilot: autopilot_runner::Autopilot::default(),
        batcher: batch::Batcher::spawn(raft.clone(), fsm.clone()),
        snapshots,
        snapshot_lock: tokio::sync::Mutex::new(()),
        _dev_snapshots: dev_snapshots,
        config,
        acl_cache: acl::Cache::default(),
        raft,
        fsm,
        log,
        client,
        clock_origin: std::time::Instant::now(),
        last_contact: Moment::default(),
        last_campaign: Moment::default(),
        campaign_now: tokio::sync::Notify::new(),
        shutdown,
    });
    tracing::info!(target: "agent.server", "started: node={} id={id:016x} server={} http={}",
        info.name, info.rpc_addr, info.http_addr);

    let limits = node.config.limits;
    let handshake = |tls: &Option<Arc<Tls>>, timeout| -> Result<_, StartError> {
        Ok(match tls {
            Some(tls) => Some(web::Handshake::new(tls, timeout)?),
            None => None,
        })
    };
    let mut listeners = tokio::task::JoinSet::new();
    listeners.spawn(web::serve(
        rpc_listener,
        rpc::handler(node.clone()),
        node.shutdown_signal(),
        "server rpc",
        web::ConnLimit {
            per_client: limits.rpc_per_client,
            exempt: Box::new({
                let node = node.clone();
                move |ip| node.is_member_address(ip)
            }),
        },
        handshake(&rpc_tls, limits.handshake.rpc)?,
    ));
    if let Some(listener) = http_listener {
        listeners.spawn(web::serve(
            listener,
            http::handler(node.clone()),
            node.shutdown_signal(),
            "http",
            web::ConnLimit::every_client(limits.http_per_client),
            None,
        ));
    }
    if let Some(listener) = https_listener {
        listeners.spawn(web::serve(
            listener,
            http::handler(node.clone()),
            node.shutdown_signal(),
            "https",
            web::ConnLimit::every_client(limits.http_per_client),
            handshake(&https_tls, limits.handshake.https)?,
        ));
    }
    let cluster_task = tokio::spawn(cluster::run(node.clone()));
    let snapshot_task = tokio::spawn(snapshot_jobs::run_policy(node.clone()));
    let autopilot_task = tokio::spawn(autopilot_runner::run(node.clone()));
    let timers_task = tokio::spawn(timers::run(node.clone()));
    let election_task = tokio::spawn(election::run(node.clone()));
    let checkpoint_task = verifier.map(|v| tokio::spawn(timers::run_checkpoints(node.clone(), v)));
    let acl_task = tokio::spawn(acl::keep_initial_management(node.clone()));
    let leader_watch = tokio::spawn(raft_watch::count_leader_changes(node.clone()));

    let mut signal = node.shutdown_signal();
    let mut failed = None;
    tokio::select! {
        _ = stop => tracing::info!(target: "agent", "caught signal, shutting down"),
        _ = async { signal.wait_for(|s| *s).await.map(|_| ()) } => {}
        reason = raft_watch::stopped_on_its_own(node.raft.clone()) => {
            let message = raft_watch::storage_failure(&reason, node.config.data_dir.as_deref());
            tracing::error!(target: "agent.server.raft", "{message}");
            failed = Some(StartError::RaftStopped(message));
        }
    }
    node.request_shutdown();
    cluster_task.abort();
    snapshot_task.abort();
    autopilot_task.abort();
    timers_task.abort();
    election_task.abort();
    if let Some(t) = checkpoint_task {
        t.abort();
    }
    acl_task.abort();
    leader_watch.abort();
    hangup.abort();
    while listeners.join_next().await.is_some() {}
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(target: "agent.server.raft", "raft stopped with an error: {e}");
    }
    tracing::info!(target: "agent", "shutdown complete");
    failed.map_or(Ok(()), Err)
}
