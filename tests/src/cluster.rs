//! The cluster harness: N `fsmhost agent` processes on free loopback ports, each with its own
//! data dir and config file in a temporary directory.
//!
//! A cluster is started at once, or prepared first ([`Cluster::prepare`]: a test can set
//! up the data dirs, mount a filesystem there, say) and then started.
//! A test can SIGKILL, SIGTERM, restart, SIGSTOP and SIGCONT any server, wait for a leader
//! all live servers agree on, and wait until they applied the same log and hold the same
//! state hash. Every server's output goes to `<dir>/<name>.log`; when a test panics, the
//! harness prints the tail of each log before it kills the processes.
//!
//! [`Cluster::start_in_namespaces`] runs each server in its own network namespace
//! ([`crate::netns`]), listening on the namespace's address, so that a test can cut the
//! network between servers; the namespaces are removed after the servers are killed.

use crate::client::{Client, HttpReply};
use crate::netns::Netns;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port for a server to listen on.
///
/// Ports come from below the kernel's ephemeral range (where the servers' own outgoing
/// connections take theirs), each handed out once per test process, starting at an offset
/// derived from the process id; each is checked free by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
        })
        .unwrap_or(32768);
    let base = 10_000u32;
    let span = ephemeral_low.saturating_sub(base).max(1000);
    let start = (std::process::id() * 97) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral_low}")
}

/// What one server reports about itself (`/v1/agent/self`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Raft role: `Leader`, `Follower`, `Candidate`, `Learner`.
    pub role: String,
    /// Raft's applied index.
    pub applied: u64,
    /// The state hash (hex).
    pub hash: String,
    /// The leader's node id (hex), if known.
    pub leader: Option<String>,
    /// This node's id (hex).
    pub id: String,
    /// The voters' ids (hex).
    pub voters: Vec<String>,
}

/// One server of the cluster.
pub struct Server {
    /// Its name (`s1`, `s2`, ...).
    pub name: String,
    /// The address it listens on (HTTP and server ports): loopback, or its namespace's.
    pub host: IpAddr,
    /// The network namespace it runs in, if any.
    netns: Option<String>,
    /// Its server (RPC) port.
    pub rpc_port: u16,
    /// Its HTTP port.
    pub http_port: u16,
    /// Its HTTPS port (listening only in a cluster made with [`Cluster::start_https`]).
    pub https_port: u16,
    /// Config lines for this server instead of the cluster's `extra`
    /// ([`Cluster::add_server_with`]).
    extra: Option<String>,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// `<host>:<http port>` (`127.0.0.1` unless in a namespace).
    pub fn http_addr(&self) -> String {
        format!("{}:{}", self.host, self.http_port)
    }

    /// `https://<host>:<https port>`.
    pub fn https_url(&self) -> String {
        format!("https://{}:{}", self.host, self.https_port)
    }

    /// `<host>:<server port>`.
    pub fn rpc_addr(&self) -> String {
        format!("{}:{}", self.host, self.rpc_port)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether its process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is shared.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }
}

/// A cluster of real `fsmhost` processes.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Config lines every server gets (e.g. snapshot options, or `[tls.*]` tables).
    extra: String,
    /// Whether servers listen on their HTTPS port too.
    https: bool,
    /// The ACL token the harness's own requests send (a cluster with ACLs).
    pub token: Option<String>,
    /// The servers, in start order.
    pub servers: Vec<Server>,
    /// The servers' network namespaces ([`Cluster::start_in_namespaces`]); declared last,
    /// so dropped after `drop` killed the servers.
    netns: Option<Netns>,
}

/// Compiles the bundled plugins into the shared cache once per test process (and under a
/// lock, once across the test binaries), before the first server starts: servers of
/// several tests starting together then load them, instead of each compiling them at the
/// same time, which on two cores took longer than a leader election is waited for.
fn warm_plugin_cache(dir: &Path) {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let _lock = crate::py_consul::Locked::new(&dir.join("warm.lock"));
        let Ok(rt) = fsmhost::plugin::Runtime::new(fsmhost::plugin::RuntimeConfig {
            limits: fsmhost::plugin::Limits::default(),
            cache_dir: Some(dir.to_path_buf()),
        }) else {
            return;
        };
        for (name, bytes) in fsmhost::plugin::bundled() {
            // A failure here only leaves the compile to the servers.
            let _ = rt.load(&format!("bundled:{name}"), bytes);
        }
    });
}

impl Cluster {
    /// Starts `n` servers with `bootstrap_expect = n`, each told to `retry_join` all the
    /// others; `bin` is the fsmhost binary.
    pub fn start(bin: &str, n: usize) -> Cluster {
        Self::start_with(bin, n, "")
    }

    /// Like [`Cluster::start`], with `extra` (top-level TOML lines such as
    /// `raft_snapshot_threshold = 100`) in every server's config, later ones included.
    pub fn start_with(bin: &str, n: usize, extra: &str) -> Cluster {
        Self::start_inner(bin, n, extra, false)
    }

    /// Like [`Cluster::start_with`], each server also listening on its HTTPS port
    /// (`ports.https`); `extra` must give it TLS (`[tls.https]` or `[tls.defaults]`).
    pub fn start_https(bin: &str, n: usize, extra: &str) -> Cluster {
        Self::start_inner(bin, n, extra, true)
    }

    /// Like [`Cluster::start_with`], with one server per namespace of `netns` (as many
    /// servers as namespaces), each listening on its namespace's address: its server port
    /// for the others, its HTTP port for clients in the test's namespace. The namespaces
    /// are the cluster's from now on ([`Cluster::netns`]) and removed after the servers.
    pub fn start_in_namespaces(bin: &str, netns: Netns, extra: &str) -> Cluster {
        let mut cluster = Self::define(bin, netns.len(), extra, false, Some(netns));
        cluster.start_prepared();
        cluster
    }

    fn start_inner(bin: &str, n: usize, extra: &str, https: bool) -> Cluster {
        let mut cluster = Self::define(bin, n, extra, https, None);
        cluster.start_prepared();
        cluster
    }

    /// Like [`Cluster::start_with`], but nothing is started yet: a test can prepare each
    /// server's `data_dir` first (which does not exist yet: mount a filesystem there, say),
    /// then call [`Cluster::start_prepared`].
    pub fn prepare(bin: &str, n: usize, extra: &str) -> Cluster {
        Self::define(bin, n, extra, false, None)
    }

    fn define(bin: &str, n: usize, extra: &str, https: bool, netns: Option<Netns>) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cluster = Cluster {
            bin: PathBuf::from(bin),
            dir,
            extra: extra.to_string(),
            https,
            token: None,
            servers: Vec::new(),
            netns,
        };
        for _ in 0..n {
            cluster.define_server();
        }
        cluster
    }

    /// Starts every server of a cluster made with [`Cluster::prepare`], with
    /// `bootstrap_expect` = their number.
    pub fn start_prepared(&mut self) {
        if let Some(dir) = self.shared_cache_dir() {
            warm_plugin_cache(&dir);
        }
        let n = self.servers.len();
        let join: Vec<String> = self.servers.iter().map(Server::rpc_addr).collect();
        for i in 0..n {
            self.write_config(i, n, &join);
            self.spawn(i);
        }
    }

    /// The temporary directory holding every server's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The servers' network namespaces, for a cluster made with
    /// [`Cluster::start_in_namespaces`].
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    fn define_server(&mut self) -> usize {
        let i = self.servers.len();
        let name = format!("s{}", i + 1);
        let root = self.dir.path();
        let (host, netns) = match self.netns.as_ref().filter(|n| i < n.len()) {
            Some(n) => (IpAddr::V4(n.node(i).ip), Some(n.node(i).ns.clone())),
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), None),
        };
        self.servers.push(Server {
            host,
            netns,
            data_dir: root.join(&name),
            config: root.join(format!("{name}.toml")),
            log: root.join(format!("{name}.log")),
            name,
            rpc_port: free_port(),
            http_port: free_port(),
            https_port: free_port(),
            extra: None,
            child: None,
        });
        i
    }

    /// Every server of every test shares one compiled-plugin cache beside the binary
    /// (`plugin_cache_dir`), so the plugins are compiled once per build instead of once per
    /// server start; a test that names its own `plugin_cache_dir` in `extra` keeps it.
    fn shared_cache_dir(&self) -> Option<PathBuf> {
        if self.extra.contains("plugin_cache_dir") {
            return None;
        }
        Some(
            self.bin
                .parent()
                .unwrap_or(Path::new("."))
                .join("fsmhost-test-plugin-cache"),
        )
    }

    fn shared_plugin_cache(&self) -> String {
        match self.shared_cache_dir() {
            Some(dir) => format!("plugin_cache_dir = {:?}\n", dir.display().to_string()),
            None => String::new(),
        }
    }

    /// The harness's keys first (top-level, the ports as dotted keys), then the extra
    /// lines, so that `extra` may add top-level keys and whole tables alike.
    fn write_config(&self, i: usize, expect: usize, join: &[String]) {
        let s = &self.servers[i];
        let join: Vec<String> = join.iter().map(|a| format!("{a:?}")).collect();
        let https = if self.https {
            format!("ports.https = {}\n", s.https_port)
        } else {
            String::new()
        };
        // In a namespace the HTTP API listens on the namespace's address, for clients
        // outside it; on loopback the default (127.0.0.1) is already the server's.
        let http_addr = if s.netns.is_some() {
            format!("addresses.http = \"{}\"\n", s.host)
        } else {
            String::new()
        };
        let text = format!(
            "node_name = {:?}\ndata_dir = {:?}\nserver = true\nbootstrap_expect = {expect}\n\
             bind_addr = \"{}\"\nretry_join = [{}]\n{}ports.server = {}\nports.http = {}\n\
             {http_addr}{https}{}\n",
            s.name,
            s.data_dir.display().to_string(),
            s.host,
            join.join(", "),
            self.shared_plugin_cache(),
            s.rpc_port,
            s.http_port,
            s.extra.as_deref().unwrap_or(&self.extra),
        );
        std::fs::write(&s.config, text).expect("config file written");
    }

    fn spawn(&mut self, i: usize) {
        let s = &mut self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .expect("log file");
        // `ip netns exec` execs the server: the child's pid is the server's.
        let mut command = match (&s.netns, &self.netns) {
            (Some(_), Some(n)) => {
                let [ip, rest @ ..] = n.exec_prefix(i);
                let mut c = Command::new(ip);
                c.args(rest).arg(&self.bin);
                c
            }
            _ => Command::new(&self.bin),
        };
        let child = command
            .arg("agent")
            .arg("--config-file")
            .arg(&s.config)
            // FSMHOST_TEST_LOG overrides the servers' log filter (debugging a run).
            .env(
                "FSMHOST_LOG",
                std::env::var("FSMHOST_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        s.child = Some(child);
    }

    /// Adds a server that joins the running cluster through `retry_join` (no bootstrap).
    pub fn add_server(&mut self) -> usize {
        let i = self.define_server();
        let join: Vec<String> = self.servers[..i].iter().map(Server::rpc_addr).collect();
        self.write_config(i, 0, &join);
        self.spawn(i);
        i
    }

    /// Adds a server like [`Cluster::add_server`], with `extra` as its config lines
    /// instead of the cluster's (another certificate, say).
    pub fn add_server_with(&mut self, extra: &str) -> usize {
        let i = self.define_server();
        self.servers[i].extra = Some(extra.to_string());
        let join: Vec<String> = self.servers[..i].iter().map(Server::rpc_addr).collect();
        self.write_config(i, 0, &join);
        self.spawn(i);
        i
    }

    /// Sends `signal` (SIGHUP, say) to server `i`, without waiting for anything.
    pub fn signal(&self, i: usize, signal: i32) {
        self.servers[i].signal(signal);
    }

    /// SIGKILLs server `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs server `i` and waits for it to exit; returns its exit code.
    pub fn terminate(&mut self, i: usize) -> Option<i32> {
        self.stop_with(i, libc::SIGTERM)
    }

    /// Sends `signal` (SIGTERM, SIGINT) to server `i` and waits for it to exit; returns its
    /// exit code.
    pub fn stop_with(&mut self, i: usize, signal: i32) -> Option<i32> {
        self.servers[i].signal(signal);
        self.wait_exit(i, Duration::from_secs(20))
    }

    /// Waits for server `i` to exit on its own; returns its exit code (`None`: still
    /// running at the deadline, or killed by a signal).
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.servers[i].child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.servers[i].child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts server `i` again from its data dir.
    pub fn restart(&mut self, i: usize) {
        assert!(
            self.servers[i].child.is_none(),
            "{} is still running",
            self.servers[i].name
        );
        self.spawn(i);
    }

    /// SIGSTOPs server `i`.
    pub fn pause(&self, i: usize) {
        self.servers[i].signal(libc::SIGSTOP);
    }

    /// SIGCONTs server `i`.
    pub fn resume(&self, i: usize) {
        self.servers[i].signal(libc::SIGCONT);
    }

    /// The running servers.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&i| self.servers[i].is_running())
            .collect()
    }

    /// A client for server `i`'s HTTP API (with the harness's token, if it has one).
    pub fn client(&self, i: usize) -> Client {
        Client::new(self.servers[i].http_addr()).with_token(self.token.as_deref())
    }

    /// Server `i`'s `/v1/agent/self`, or `None` if it does not answer.
    pub fn agent_self(&self, i: usize) -> Option<serde_json::Value> {
        let r = self
            .client(i)
            .with_timeout(Duration::from_secs(2))
            .try_get("/v1/agent/self")
            .ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// Server `i`'s `Stats.raft` (raft's state, indexes and snapshot figures).
    pub fn raft_stats(&self, i: usize) -> Option<serde_json::Value> {
        Some(self.agent_self(i)?["Stats"]["raft"].clone())
    }

    /// Server `i`'s own report, or `None` if it does not answer.
    pub fn state(&self, i: usize) -> Option<NodeState> {
        let v = self.agent_self(i)?;
        let raft = &v["Stats"]["raft"];
        Some(NodeState {
            role: raft["state"].as_str()?.to_string(),
            applied: raft["applied_index"].as_u64()?,
            hash: v["Stats"]["fsm"]["state_hash"].as_str()?.to_string(),
            leader: raft["leader"].as_str().map(str::to_string),
            id: v["Config"]["NodeID"].as_str()?.to_string(),
            voters: raft["voters"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
        })
    }

    /// Waits until every running server names the same leader, which is one of them;
    /// returns the leader's index in `servers`.
    pub fn wait_leader(&mut self, timeout: Duration) -> usize {
        self.try_wait_leader(timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Cluster::wait_leader`] that gives up with what the servers said instead of
    /// panicking.
    pub fn try_wait_leader(&mut self, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let live = self.live();
            let states: Vec<(usize, Option<NodeState>)> =
                live.iter().map(|&i| (i, self.state(i))).collect();
            let leader_ids: Vec<Option<String>> = states
                .iter()
                .map(|(_, s)| s.as_ref().and_then(|s| s.leader.clone()))
                .collect();
            if let Some(Some(lid)) = leader_ids.first()
                && leader_ids
                    .iter()
                    .all(|l| l.as_deref() == Some(lid.as_str()))
                && let Some((i, _)) = states.iter().find(|(_, s)| {
                    s.as_ref()
                        .is_some_and(|s| &s.id == lid && s.role == "Leader")
                })
            {
                return Ok(*i);
            }
            if Instant::now() > deadline {
                return Err(format!("no agreed leader within {timeout:?}: {states:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the leader has registered every running server in the catalog (the
    /// `consul` service with `serfHealth` passing, Consul's leader reconcile), as Consul's
    /// own test server waits before it calls a cluster ready; returns the leader.
    pub fn wait_servers_registered(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self.wait_leader(timeout);
            let live = self.live().len();
            let r = self
                .client(leader)
                .try_get("/v1/health/service/consul?passing");
            let registered = r
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| r.json().as_array().map(Vec::len));
            if registered == Some(live) {
                return leader;
            }
            if Instant::now() > deadline {
                panic!(
                    "the servers were not registered within {timeout:?}: {registered:?} of {live}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every running server applied the same index and holds the same state
    /// hash; returns that hash.
    pub fn wait_converged(&mut self, timeout: Duration) -> String {
        self.wait_converged_past(0, timeout).1
    }

    /// Waits until every running server applied the same index, at least `min_applied`,
    /// and holds the same state hash; returns the index and the hash. (Servers keep their
    /// state in memory and replay the log at start, so right after a restart they all
    /// agree on the empty state at index 0.)
    pub fn wait_converged_past(&mut self, min_applied: u64, timeout: Duration) -> (u64, String) {
        self.try_wait_converged_past(min_applied, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Cluster::wait_converged_past`] that gives up with what the servers said instead
    /// of panicking.
    pub fn try_wait_converged_past(
        &mut self,
        min_applied: u64,
        timeout: Duration,
    ) -> Result<(u64, String), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let live = self.live();
            let states: Vec<Option<NodeState>> = live.iter().map(|&i| self.state(i)).collect();
            if let Some(Some(first)) = states.first()
                && first.applied >= min_applied
                && states.iter().all(|s| {
                    s.as_ref()
                        .is_some_and(|s| s.applied == first.applied && s.hash == first.hash)
                })
            {
                return Ok((first.applied, first.hash.clone()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "servers did not converge past index {min_applied} within {timeout:?}: {states:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POSTs a CBOR command to server `i`'s `/v1/apply/{plugin}/{command}`.
    pub fn apply(
        &self,
        i: usize,
        plugin: &str,
        command: &str,
        payload: &[u8],
    ) -> Result<HttpReply, String> {
        self.client(i)
            .with_timeout(Duration::from_secs(15))
            .try_request(
                "POST",
                &format!("/v1/apply/{plugin}/{command}"),
                "application/cbor",
                payload,
            )
    }

    /// Runs a CBOR query on server `i` (`query_string` such as `?stale`).
    pub fn query(
        &self,
        i: usize,
        plugin: &str,
        query: &str,
        args: &[u8],
        query_string: &str,
    ) -> Result<HttpReply, String> {
        self.client(i)
            .with_timeout(Duration::from_secs(15))
            .try_request(
                "POST",
                &format!("/v1/query/{plugin}/{query}{query_string}"),
                "application/cbor",
                args,
            )
    }

    /// Server `i`'s whole log so far.
    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.servers[i].log).unwrap_or_default()
    }

    /// The last `lines` lines of server `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.servers[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.servers.len() {
                eprintln!(
                    "----- {} log (tail) -----\n{}",
                    self.servers[i].name,
                    self.log_tail(i, 40)
                );
            }
        }
        for s in &mut self.servers {
            if let Some(mut c) = s.child.take() {
                s_cont(&c);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Resumes a child that a test may have paused, so that nothing is left stopped.
fn s_cont(c: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGCONT);
    }
}
