//! Network namespaces for cluster tests that cut the network between servers (the nemesis
//! suite's partitions).
//!
//! Owns: one namespace per server, each with a veth pair whose outer end is on a bridge in
//! the test's own (root) namespace; the addresses (a /24 per [`Netns`], the bridge `.1`,
//! server `i` at `.10 + i`); the partitions between servers; and the removal of all of it
//! when the [`Netns`] is dropped, panicking test or not.
//!
//! A partition is made of `blackhole` routes inside the namespaces: isolating server `k`
//! adds, in `k`'s namespace, a route dropping traffic to every other server's address, and
//! in theirs one dropping traffic to `k`'s. Clients in the root namespace (the bridge's
//! address) still reach every server, isolated or not, as Jepsen's clients do. New
//! connections across the cut fail at once (the kernel refuses to route them), established
//! ones see their packets dropped until the cut heals. (Dropping packets silently on the
//! bridge would need `tc`'s `gact` action or nftables, which this machine's kernel lacks.)
//!
//! Names hold the process id and a per-process counter (`fh<pid>x<n>...`), so concurrent
//! test processes, and several clusters of one, never share a namespace, an interface or a
//! subnet; leftovers of a process that died without cleaning up (SIGKILL) are removed by
//! the next [`Netns::create`].
//!
//! Needs root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`) and iproute2's `ip`;
//! [`Netns::available`] tells whether this process can make them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Why namespaces could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The process is not root.
    #[error("network namespaces need root (this process runs as uid {0})")]
    NotRoot(u32),
    /// `ip` could not be run.
    #[error("running `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The failure.
        source: std::io::Error,
    },
    /// `ip` ran and failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Every candidate /24 is already routed on this machine.
    #[error("no free 10.x.y.0/24 subnet for the namespaces")]
    NoSubnet,
}

/// One server's namespace.
#[derive(Debug, Clone)]
pub struct Node {
    /// The namespace's name (as `ip netns` lists it).
    pub ns: String,
    /// The server's address, on the namespace's end of its veth pair.
    pub ip: Ipv4Addr,
    /// The veth end in the root namespace (on the bridge).
    outer: String,
}

/// Namespaces for `n` servers on one bridge, removed on drop.
#[derive(Debug)]
pub struct Netns {
    bridge: String,
    host_ip: Ipv4Addr,
    nodes: Vec<Node>,
    /// Namespaces made so far (all of them once [`Netns::create`] returns); what drop
    /// removes.
    made: Vec<String>,
    bridge_made: bool,
    /// The cut pairs `(from, to)`: a blackhole route in `from`'s namespace to `to`.
    cuts: Mutex<BTreeSet<(usize, usize)>>,
}

/// Runs `ip` with `args`; its stdout.
fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let cmd = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetnsError::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The pid in a name of ours (`fh<pid>x...`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("fh")?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

/// Removes the namespaces and bridges a dead process of ours left behind.
fn remove_leftovers() {
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if owner_pid(name).is_some_and(|p| !alive(p)) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(list) = ip(&["-o", "link", "show", "type", "bridge"]) {
        for line in list.lines() {
            // `7: fh123x0br: <BROADCAST,...`
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            if name.ends_with("br") && owner_pid(name).is_some_and(|p| !alive(p)) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// A /24 no route of this machine's root namespace mentions: `10.a.b.0`, chosen from the
/// pid and `serial` so that concurrent makers start from different ones.
fn free_subnet(serial: u32) -> Result<(u8, u8), NetnsError> {
    let routes = ip(&["-4", "-o", "route", "show", "table", "all"])?;
    let addrs = ip(&["-4", "-o", "addr", "show"])?;
    let pid = std::process::id();
    for attempt in 0..2000u32 {
        let k = pid.wrapping_mul(7).wrapping_add(serial * 131 + attempt);
        let a = 200 + (k / 256) % 50;
        let b = k % 256;
        let prefix = format!("10.{a}.{b}.");
        if !routes.contains(&prefix) && !addrs.contains(&prefix) {
            return Ok((a as u8, b as u8));
        }
    }
    Err(NetnsError::NoSubnet)
}

impl Netns {
    /// Whether this process can make namespaces: it is root and `ip netns` runs.
    pub fn available() -> bool {
        // SAFETY: geteuid(2) has no preconditions and touches no memory.
        let uid = unsafe { libc::geteuid() };
        uid == 0 && ip(&["netns", "list"]).is_ok()
    }

    /// Makes `n` namespaces, their veth pairs and the bridge, with addresses, everything
    /// up. What was made before a failure is removed (the value's drop).
    pub fn create(n: usize) -> Result<Netns, NetnsError> {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        // SAFETY: as in `available`.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            return Err(NetnsError::NotRoot(uid));
        }
        remove_leftovers();
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let tag = format!("fh{}x{serial}", std::process::id());
        let (a, b) = free_subnet(serial)?;
        let mut net = Netns {
            bridge: format!("{tag}br"),
            host_ip: Ipv4Addr::new(10, a, b, 1),
            nodes: Vec::new(),
            made: Vec::new(),
            bridge_made: false,
            cuts: Mutex::new(BTreeSet::new()),
        };
        let bridge = net.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.bridge_made = true;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host_ip),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..n {
            let ns = format!("{tag}s{}", i + 1);
            let outer = format!("{tag}h{i}");
            let inner = format!("{tag}n{i}");
            let addr = Ipv4Addr::new(10, a, b, 10 + i as u8);
            ip(&["netns", "add", &ns])?;
            net.made.push(ns.clone());
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns,
            ])?;
            ip(&["link", "set", &outer, "master", &bridge, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            net.nodes.push(Node {
                ns,
                ip: addr,
                outer,
            });
        }
        Ok(net)
    }

    /// How many namespaces.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Server `i`'s namespace.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The root namespace's address on the bridge (where clients' requests come from).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    fn set_cut(&self, from: usize, to: usize, cut: bool) -> Result<(), NetnsError> {
        let mut cuts = self.cuts.lock().unwrap_or_else(|p| p.into_inner());
        if cuts.contains(&(from, to)) == cut {
            return Ok(());
        }
        let dst = format!("{}/32", self.nodes[to].ip);
        let verb = if cut { "add" } else { "del" };
        ip(&["-n", &self.nodes[from].ns, "route", verb, "blackhole", &dst])?;
        if cut {
            cuts.insert((from, to));
        } else {
            cuts.remove(&(from, to));
        }
        Ok(())
    }

    /// Cuts server `k` off from every other server, both ways; clients still reach it.
    pub fn isolate(&self, k: usize) -> Result<(), NetnsError> {
        for j in (0..self.nodes.len()).filter(|&j| j != k) {
            self.set_cut(k, j, true)?;
            self.set_cut(j, k, true)?;
        }
        Ok(())
    }

    /// Undoes every cut involving server `k`.
    pub fn heal(&self, k: usize) -> Result<(), NetnsError> {
        for j in (0..self.nodes.len()).filter(|&j| j != k) {
            self.set_cut(k, j, false)?;
            self.set_cut(j, k, false)?;
        }
        Ok(())
    }

    /// Undoes every cut.
    pub fn heal_all(&self) -> Result<(), NetnsError> {
        let cuts: Vec<(usize, usize)> = self
            .cuts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        for (from, to) in cuts {
            self.set_cut(from, to, false)?;
        }
        Ok(())
    }

    /// The servers currently cut off from at least one other.
    pub fn partitioned(&self) -> BTreeSet<usize> {
        self.cuts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .collect()
    }

    /// The command prefix that runs a program in server `i`'s namespace
    /// (`ip netns exec <ns>`); `ip` execs the program, so the child's pid is the program's
    /// and signals reach it.
    pub fn exec_prefix(&self, i: usize) -> [String; 4] {
        [
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.nodes[i].ns.clone(),
        ]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the outer end.
        for ns in self.made.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("netns: removing {ns}: {e}");
            }
        }
        for n in &self.nodes {
            // Normally already gone with its namespace.
            let _ = ip(&["link", "del", &n.outer]);
        }
        if self.bridge_made
            && let Err(e) = ip(&["link", "del", &self.bridge])
        {
            eprintln!("netns: removing {}: {e}", self.bridge);
        }
    }
}
