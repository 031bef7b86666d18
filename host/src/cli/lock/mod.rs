//! `fsmhost lock [-n N] prefix child...`: Consul's `consul lock`. Holds a lock (or, with
//! `-n` above 1, a slot of a semaphore) under `prefix` while a child process runs, then
//! releases it and exits with the child's exit code.
//!
//! It is a client of the HTTP API, as Consul's is (`api/lock.go`, `api/semaphore.go`):
//! a session with a TTL, renewed at half the TTL; the lock is the key `prefix/.lock`
//! acquired with `?acquire=`; a semaphore is `semaphore.rs`. While the child runs, the
//! lock is watched with blocking queries; if it is lost (the session invalidated, the key
//! taken), the child is killed. SIGINT and SIGTERM are passed to the child, and the lock
//! is released once it exits.

mod client;
mod semaphore;

use std::time::{Duration, Instant};

use super::Api;
use client::{Http, kv_path};

/// Consul's `DefaultLockSessionTTL`.
const SESSION_TTL: Duration = Duration::from_secs(15);
/// How long one blocking read waits (Consul's `DefaultLockWaitTime`).
const WAIT: Duration = Duration::from_secs(15);
/// How long to wait before trying again when the lock is free but refused (its last
/// holder's lock-delay): Consul's `DefaultLockRetryTime`.
const RETRY: Duration = Duration::from_secs(5);
/// Consul's flag value on the lock key, so its tools recognise it.
const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// The lock key's name under the prefix (Consul's lock and semaphore key).
const LOCK_KEY: &str = ".lock";

/// `fsmhost lock`'s arguments.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// How many may hold it at once: 1 is a lock, more a semaphore.
    #[arg(short = 'n', default_value_t = 1)]
    pub limit: u32,
    /// The session's name (default: "Consul lock for PREFIX").
    #[arg(long = "name")]
    pub name: Option<String>,
    /// Give up acquiring after this long (a duration: 10s, 1m; default: wait forever).
    #[arg(long = "timeout")]
    pub timeout: Option<String>,
    /// How many times a failed read of the lock is retried while monitoring it before the
    /// lock counts as lost (Consul's default 3).
    #[arg(long = "monitor-retry", default_value_t = 3)]
    pub monitor_retry: u32,
    /// Run the child through `sh -c` (the default, as Consul); `-shell=false` runs it
    /// directly.
    #[arg(long = "shell", default_value_t = true, action = clap::ArgAction::Set)]
    pub shell: bool,
    /// Print what the lock is doing.
    #[arg(long = "verbose")]
    pub verbose: bool,
    /// The server to ask: address, TLS and token.
    #[command(flatten)]
    pub http_addr: Api,
    /// The key prefix the lock lives under.
    pub prefix: String,
    /// The command to run while holding it.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub child: Vec<String>,
}

/// What is held: the lock, or a semaphore slot.
enum Held {
    Lock { key: String },
    Semaphore { prefix: String, contender: String },
}

/// Runs `fsmhost lock`; returns the exit code (the child's, or 1 when the lock could not
/// be had).
pub fn run(args: LockArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: no async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(lock_and_run(args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            1
        }
    }
}

async fn lock_and_run(args: LockArgs) -> Result<i32, String> {
    if args.limit == 0 {
        return Err("Error: -n must be at least 1".into());
    }
    let prefix = args.prefix.trim_matches('/').to_string();
    if prefix.is_empty() {
        return Err("Error: a key prefix is required".into());
    }
    let timeout = match &args.timeout {
        None => None,
        Some(t) => Some(
            crate::duration::parse(t)
                .ok_or_else(|| format!("Error: -timeout {t:?} is not a duration (10s, 1m)"))?,
        ),
    };
    let http = Http {
        client: args.http_addr.client().map_err(|e| format!("Error: {e}"))?,
        addr: args.http_addr.addr(),
    };
    let verbose = |m: &str| {
        if args.verbose {
            eprintln!("{m}");
        }
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("Consul lock for {prefix}"));
    let session = create_session(&http, &name, deadline).await?;
    verbose(&format!("Created session {session}"));
    let acquired = if args.limit == 1 {
        acquire_lock(&http, &prefix, &session, deadline).await
    } else {
        semaphore::acquire(&http, &prefix, &session, args.limit, deadline).await
    };
    let held = match acquired {
        Ok(Some(held)) => held,
        Ok(None) => {
            http.destroy(&session).await;
            return Err("Lock acquisition failed: timeout".into());
        }
        Err(e) => {
            http.destroy(&session).await;
            return Err(format!("Lock acquisition failed: {e}"));
        }
    };
    verbose("Lock acquired");
    let code = run_child(&http, &args, &session, &held).await;
    release(&http, &session, &held).await;
    http.destroy(&session).await;
    verbose("Lock released");
    code
}

/// Creates the lock's session, retrying while the server's node is not registered yet (a
/// new leader registers the servers within seconds).
async fn create_session(
    http: &Http,
    name: &str,
    deadline: Option<Instant>,
) -> Result<String, String> {
    let give_up = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
    loop {
        match http.create_session(name).await {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() < give_up && e.contains("Missing node registration") => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("Failed to create session: {e}")),
        }
    }
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// How long a blocking read may wait before `deadline`.
fn left(deadline: Option<Instant>) -> Duration {
    deadline.map_or(WAIT, |d| d.saturating_duration_since(Instant::now()))
}

/// Consul's `Lock.Lock`: acquire `prefix/.lock`, waiting on the key while another session
/// holds it. `None` on timeout.
async fn acquire_lock(
    http: &Http,
    prefix: &str,
    session: &str,
    deadline: Option<Instant>,
) -> Result<Option<Held>, String> {
    let key = format!("{prefix}/{LOCK_KEY}");
    let path = kv_path(&key);
    let mut index = 0;
    loop {
        if past(deadline) {
            return Ok(None);
        }
        let (entries, next) = http.entries_within(&path, index, left(deadline)).await?;
        index = next;
        if past(deadline) {
            return Ok(None);
        }
        if let Some(e) = entries.first() {
            match &e.session {
                Some(holder) if holder == session => return Ok(Some(Held::Lock { key })),
                Some(_) => continue, // held: wait for a change
                None => {}
            }
        }
        let acquire = format!("{path}?acquire={session}&flags={LOCK_FLAG}");
        if http.kv_write(&acquire, Vec::new()).await? {
            return Ok(Some(Held::Lock { key }));
        }
        // Free but refused: the lock-delay of an invalidated holder.
        tokio::time::sleep(RETRY.min(left(deadline))).await;
    }
}

/// Gives up what is held; errors are ignored (the session is destroyed next, which
/// releases whatever it still holds).
async fn release(http: &Http, session: &str, held: &Held) {
    match held {
        Held::Lock { key } => {
            let path = format!("{}?release={session}&flags={LOCK_FLAG}", kv_path(key));
            let _ = http.kv_write(&path, Vec::new()).await;
        }
        Held::Semaphore { .. } => semaphore::release(http, session, held).await,
    }
}

/// Whether the session still holds what it acquired (one blocking read from `index`),
/// and the index to wait from next.
async fn still_held(
    http: &Http,
    session: &str,
    held: &Held,
    index: u64,
) -> Result<(bool, u64), String> {
    match held {
        Held::Lock { key } => {
            let (entries, index) = http.entries(&kv_path(key), index).await?;
            let ours = entries
                .first()
                .is_some_and(|e| e.session.as_deref() == Some(session));
            Ok((ours, index))
        }
        Held::Semaphore { prefix, .. } => semaphore::holds(http, prefix, session, index).await,
    }
}

/// Runs the child while renewing the session and watching the lock; returns its exit
/// code. A lost lock kills the child; SIGINT and SIGTERM are passed on to it.
async fn run_child(
    http: &Http,
    args: &LockArgs,
    session: &str,
    held: &Held,
) -> Result<i32, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut command = if args.shell {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(args.child.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&args.child[0]);
        c.args(&args.child[1..]);
        c
    };
    let mut child = command
        .spawn()
        .map_err(|e| format!("Error: running {:?}: {e}", args.child.join(" ")))?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let signal_child = |sig: i32| {
        if let Some(pid) = pid {
            // SAFETY: sends a signal to the child this process spawned and still waits
            // for; no memory is involved.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut renew = tokio::time::interval(SESSION_TTL / 2);
    renew.tick().await;
    let monitor = async {
        let (mut index, mut failures) = (0, 0);
        loop {
            match still_held(http, session, held, index).await {
                Ok((true, next)) => {
                    index = next;
                    failures = 0;
                }
                Ok((false, _)) => return,
                Err(_) if failures < args.monitor_retry => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    };
    tokio::pin!(monitor);
    let mut lost = false;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| format!("Error: waiting for the child: {e}"))?;
                if lost {
                    eprintln!("Lock lost, killed child");
                }
                return Ok(exit_code(status));
            }
            _ = interrupt.recv() => {
                eprintln!("Shutdown triggered, killing child");
                signal_child(libc::SIGINT);
            }
            _ = terminate.recv() => {
                eprintln!("Shutdown triggered, killing child");
                signal_child(libc::SIGTERM);
            }
            _ = renew.tick() => {
                if let Ok(false) = http.renew(session).await {
                    lost = true;
                    signal_child(libc::SIGTERM);
                }
            }
            () = &mut monitor, if !lost => {
                lost = true;
                signal_child(libc::SIGTERM);
            }
        }
    }
}

/// The child's exit code as a shell reports it (128 + the signal that ended it).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
