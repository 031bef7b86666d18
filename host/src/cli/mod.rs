//! The `fsmhost` command line.
//!
//! Owns: argument parsing and the commands that do not need a running server. Each
//! subcommand prints to stdout and returns an exit code; errors go to stderr as one line
//! naming the problem.

mod acl;
mod agent;
mod api;
mod args;
mod autopilot;
mod demo;
mod kv;
mod lock;
mod operator;
mod snapshot;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

use crate::plugin::{Runtime, RuntimeConfig};
pub use api::Api;
pub use args::normalize_args;

/// fsmhost: a replicated state machine host whose FSM is a set of WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "fsmhost", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Loads the bundled plugins into an in-memory store and runs a few kv commands through
    /// them, printing each step (a tour until the agent exists).
    Demo,
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Runs a server: `--dev` for a one-server in-memory cluster, or `--config-file F`.
    Agent(Box<agent::AgentArgs>),
    /// Cluster operations on a running server.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Consul's ACL system: bootstrap, tokens, policies and roles.
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Prints this binary's version and the plugin contract it serves.
    Version,
    /// Saves, restores and inspects snapshot archives.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Reads and writes Consul's key/value store (the kv plugin's `/v1/kv/` API).
    #[command(subcommand)]
    Kv(KvCommand),
    /// Holds a lock (or with -n above 1, a semaphore slot) under a KV prefix while a
    /// child process runs, then releases it: Consul's `consul lock`. Exits with the
    /// child's exit code.
    Lock(Box<lock::LockArgs>),
    /// Lists the servers of the cluster and whether each answers.
    Members {
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Asks a running server to leave the cluster (removing it from the raft
    /// configuration), then to stop.
    Leave {
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
}

/// `fsmhost kv ...` (flags may be written Consul's way, `-recurse`, or `--recurse`).
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Prints a key's value (`-recurse`: `key:value` for every key under a prefix;
    /// `-keys`: only key names; `-detailed`: every field).
    Get {
        /// The key or prefix.
        #[arg(default_value = "")]
        key: String,
        /// Every key under the prefix.
        #[arg(long)]
        recurse: bool,
        /// Only key names, cut after `-separator`.
        #[arg(long)]
        keys: bool,
        /// The separator for `-keys`.
        #[arg(long, default_value = "/")]
        separator: String,
        /// Every field of the entry.
        #[arg(long)]
        detailed: bool,
        /// Print values in base64.
        #[arg(long)]
        base64: bool,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Writes a key: DATA, `@file`, or `-` for stdin (empty when absent).
    Put {
        /// The key.
        key: String,
        /// The value.
        data: Option<String>,
        /// Flags to store with the key.
        #[arg(long, default_value_t = 0)]
        flags: u64,
        /// Write only if the key's ModifyIndex is `-modify-index` (0: only if absent).
        #[arg(long)]
        cas: bool,
        /// The ModifyIndex for `-cas`.
        #[arg(long)]
        modify_index: Option<u64>,
        /// DATA is base64.
        #[arg(long)]
        base64: bool,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Deletes a key (`-recurse`: every key under a prefix).
    Delete {
        /// The key or prefix.
        #[arg(default_value = "")]
        key: String,
        /// Every key under the prefix.
        #[arg(long)]
        recurse: bool,
        /// Delete only if the key's ModifyIndex is `-modify-index`.
        #[arg(long)]
        cas: bool,
        /// The ModifyIndex for `-cas`.
        #[arg(long)]
        modify_index: Option<u64>,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
}

/// `fsmhost snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Saves an archive of the cluster's state to FILE (read back and verified before it
    /// takes the name).
    Save {
        /// Where to write the archive.
        file: PathBuf,
        /// Let any server answer from its own state (works without a leader).
        #[arg(long)]
        stale: bool,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Restores the cluster's state from an archive: every server switches to it at the
    /// same index. Meant for disaster recovery into a fresh cluster.
    Restore {
        /// The archive.
        file: PathBuf,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Prints an archive's (or a raw `raft/snapshots/<id>` directory's) metadata and the
    /// records and bytes of each table, after checking it whole.
    Inspect {
        /// An archive, or a snapshot directory holding meta.json and state.bin.
        file: PathBuf,
        /// `pretty` (default) or `json`.
        #[arg(long, default_value = "pretty", value_parser = ["pretty", "json"])]
        format: String,
    },
}

/// `fsmhost operator ...`
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// The raft configuration.
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Autopilot: server health, promotion of new servers, dead-server cleanup.
    #[command(subcommand)]
    Autopilot(AutopilotCommand),
}

/// `fsmhost operator autopilot ...`
#[derive(Debug, Subcommand)]
pub enum AutopilotCommand {
    /// Prints the autopilot configuration.
    GetConfig {
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Changes the autopilot configuration (only the settings given; compare-and-set).
    SetConfig {
        /// Remove dead servers (true or false).
        #[arg(long, value_name = "BOOL")]
        cleanup_dead_servers: Option<bool>,
        /// Most log entries a healthy server may trail the leader by.
        #[arg(long)]
        max_trailing_logs: Option<u64>,
        /// Fewest voters dead-server cleanup leaves.
        #[arg(long)]
        min_quorum: Option<u32>,
        /// Longest time since last contact with the leader for a healthy server (e.g. 200ms).
        #[arg(long)]
        last_contact_threshold: Option<String>,
        /// How long a new server must be healthy before it becomes a voter (e.g. 10s).
        #[arg(long)]
        server_stabilization_time: Option<String>,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Prints autopilot's view of every server (asked of the leader).
    State {
        /// `pretty` (default) or `json`.
        #[arg(long, default_value = "pretty", value_parser = ["pretty", "json"])]
        format: String,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
}

/// `fsmhost operator raft ...`
#[derive(Debug, Subcommand)]
pub enum RaftCommand {
    /// Lists the servers in the raft configuration (asked of the leader, it also shows how
    /// far each trails it).
    ListPeers {
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Removes a server from the raft configuration.
    RemovePeer {
        /// The server's id, as list-peers shows it.
        #[arg(long)]
        id: Option<String>,
        /// The server's address (its server port), as list-peers shows it.
        #[arg(long)]
        address: Option<String>,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
}

/// `fsmhost plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Loads a component the way a server would and prints its description, or the reason
    /// it would be refused.
    Inspect {
        /// The component file (.wasm).
        file: PathBuf,
    },
    /// Lists the plugins built into this binary.
    Bundled,
    /// Installs a component on every server of a running cluster through the log
    /// (`PUT /v1/plugins`): a higher version of a loaded plugin, or a new plugin. Prints
    /// what changed per table.
    Install {
        /// The component file (.wasm).
        file: PathBuf,
        /// Check the component against the running cluster and report what it would
        /// change, without installing it.
        #[arg(long)]
        dry_run: bool,
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
    /// Lists the plugins a running server has loaded (`GET /v1/plugins`).
    List {
        /// The server to ask: address, TLS and token.
        #[command(flatten)]
        http_addr: Api,
    },
}

/// The whole of `fsmhost`'s `main`: parses the process's arguments (Consul's one-dash long
/// flags accepted) and runs them; returns the exit code.
pub fn main() -> i32 {
    use clap::Parser;
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    if !matches!(cli.command, Command::Agent(_)) {
        // A client command printing into a closed pipe (`fsmhost kv get -recurse | head`)
        // ends quietly, as Unix tools do, instead of panicking on the write. The agent keeps
        // Rust's default (SIGPIPE ignored): a peer closing a socket is an error to handle,
        // never a reason to die.
        // SAFETY: resets one signal's disposition before any thread starts; no handler runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    run(cli)
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Plugin(PluginCommand::Inspect { file }) => inspect(&file),
        Command::Plugin(PluginCommand::Bundled) => bundled(),
        Command::Plugin(PluginCommand::List { http_addr }) => operator::plugin_list(&http_addr),
        Command::Plugin(PluginCommand::Install {
            file,
            dry_run,
            http_addr,
        }) => operator::plugin_install(&http_addr, &file, dry_run),
        Command::Version => {
            println!("fsmhost v{}", env!("CARGO_PKG_VERSION"));
            println!(
                "Plugin contract: fsmhost:plugin@{}",
                crate::plugin::CONTRACT_VERSION
            );
            Ok(())
        }
        Command::Agent(args) => agent::run(&args),
        Command::Acl(cmd) => acl::run(cmd),
        Command::Leave { http_addr } => agent::leave(&http_addr),
        Command::Lock(args) => return lock::run(*args),
        Command::Members { http_addr } => kv::members(&http_addr),
        Command::Kv(KvCommand::Get {
            key,
            recurse,
            keys,
            separator,
            detailed,
            base64,
            http_addr,
        }) => kv::get(
            &http_addr,
            &kv::GetArgs {
                key: &key,
                recurse,
                keys,
                separator: &separator,
                detailed,
                base64,
            },
        ),
        Command::Kv(KvCommand::Put {
            key,
            data,
            flags,
            cas,
            modify_index,
            base64,
            http_addr,
        }) => kv::put(
            &http_addr,
            &kv::PutArgs {
                key: &key,
                data: data.as_deref(),
                flags,
                cas,
                modify_index,
                base64,
            },
        ),
        Command::Kv(KvCommand::Delete {
            key,
            recurse,
            cas,
            modify_index,
            http_addr,
        }) => kv::delete(&http_addr, &key, recurse, cas, modify_index),
        Command::Snapshot(SnapshotCommand::Save {
            file,
            stale,
            http_addr,
        }) => snapshot::save(&http_addr, &file, stale),
        Command::Snapshot(SnapshotCommand::Restore { file, http_addr }) => {
            snapshot::restore(&http_addr, &file)
        }
        Command::Snapshot(SnapshotCommand::Inspect { file, format }) => {
            snapshot::inspect(&file, format == "json")
        }
        Command::Operator(OperatorCommand::Raft(RaftCommand::ListPeers { http_addr })) => {
            operator::list_peers(&http_addr)
        }
        Command::Operator(OperatorCommand::Raft(RaftCommand::RemovePeer {
            id,
            address,
            http_addr,
        })) => operator::remove_peer(&http_addr, id.as_deref(), address.as_deref()),
        Command::Operator(OperatorCommand::Autopilot(c)) => match c {
            AutopilotCommand::GetConfig { http_addr } => autopilot::get_config(&http_addr),
            AutopilotCommand::SetConfig {
                cleanup_dead_servers,
                max_trailing_logs,
                min_quorum,
                last_contact_threshold,
                server_stabilization_time,
                http_addr,
            } => autopilot::set_config(
                &http_addr,
                &autopilot::Changes {
                    cleanup_dead_servers,
                    max_trailing_logs,
                    min_quorum,
                    last_contact_threshold,
                    server_stabilization_time,
                },
            ),
            AutopilotCommand::State { format, http_addr } => {
                autopilot::state(&http_addr, format == "json")
            }
        },
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("error: {message}");
            1
        }
    }
}

/// Prints rows as left-aligned columns two spaces apart, each line after `indent`.
fn print_table(rows: &[Vec<String>], indent: &str) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{indent}{}", line.join("  ").trim_end());
    }
}

fn print_plugin(p: &crate::plugin::LoadedPlugin) {
    let d = p.description();
    println!(
        "plugin {} {} ({}) sha256:{}",
        d.name,
        d.version,
        d.edition,
        p.hash_hex()
    );
    for t in &d.tables {
        println!("  table {}", t.name);
        for i in &t.indexes {
            let mut flags = Vec::new();
            for (on, name) in [
                (i.unique, "unique"),
                (i.multi, "multi"),
                (i.allow_missing, "allow-missing"),
                (i.prefix, "prefix"),
            ] {
                if on {
                    flags.push(name);
                }
            }
            println!("    index {} [{}]", i.name, flags.join(", "));
        }
    }
    println!("  commands: {}", d.commands.join(", "));
    println!("  queries: {}", d.queries.join(", "));
    let routes: Vec<String> = d.routes.iter().map(ToString::to_string).collect();
    println!("  routes: {}", routes.join(", "));
    println!("  imports: {}", p.imports().join(", "));
}

fn inspect(file: &std::path::Path) -> Result<(), String> {
    let bytes =
        std::fs::read(file).map_err(|e| format!("reading plugin file {}: {e}", file.display()))?;
    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| e.to_string())?;
    let plugin = runtime
        .load(&file.display().to_string(), &bytes)
        .map_err(|e| e.to_string())?;
    print_plugin(&plugin);
    Ok(())
}

fn bundled() -> Result<(), String> {
    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| e.to_string())?;
    let set = runtime.load_bundled().map_err(|e| e.to_string())?;
    for p in set.plugins() {
        print_plugin(p);
    }
    Ok(())
}
