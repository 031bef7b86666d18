//! `loadgen`: drives a cluster with C concurrent clients and reports throughput and
//! p50/p99/max latency; kept out of the product binary.
//!
//! - `loadgen fsmhost --addr H:P[,H:P..]`: Consul-style KV writes, `POST /v1/apply/kv/set`
//!   with a CBOR `{key, value, flags}` body, over keep-alive HTTP/1.1 (one connection per
//!   client).
//! - `loadgen etcd --endpoints H:P[,H:P..]`: the same writes through etcd's native gRPC API
//!   (`etcdserverpb.KV/Put`, hand-encoded protobuf over HTTP/2; one connection per client).
//! - `loadgen fsync --dir D`: the latency of one 256-byte append + `fdatasync` on D's disk,
//!   the floor under any durable write.
//!
//! Each client sends its share of requests one after another, with a distinct key per
//! request (`key-size` bytes, zero-padded); the first 5% of each client's requests warm up
//! connections and are not measured. Prints one line for people and one JSON line.

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Load generator for fsmhost and etcd clusters")]
struct Cli {
    #[command(subcommand)]
    target: Target,
}

#[derive(clap::Args, Clone)]
struct Load {
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Measured requests in all (each client sends its share, plus 5% warm-up).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
}

#[derive(Subcommand)]
enum Target {
    /// Writes to fsmhost servers' HTTP API.
    Fsmhost {
        /// HTTP addresses; clients are spread over them round-robin.
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<String>,
        #[command(flatten)]
        load: Load,
    },
    /// Writes to etcd through its gRPC API.
    Etcd {
        /// Client URLs' host:port; clients are spread over them round-robin.
        #[arg(long, value_delimiter = ',', required = true)]
        endpoints: Vec<String>,
        #[command(flatten)]
        load: Load,
    },
    /// Measures append + fdatasync latency in a directory.
    Fsync {
        /// The directory (on the disk to measure).
        #[arg(long)]
        dir: PathBuf,
        /// How many fdatasyncs.
        #[arg(long, default_value_t = 500)]
        count: usize,
    },
}

/// One client's connection to one server.
enum Conn {
    Http1 {
        client: Client<HttpConnector, Full<Bytes>>,
        addr: String,
    },
    Grpc {
        client: Client<HttpConnector, Full<Bytes>>,
        addr: String,
    },
}

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c
}

#[derive(serde::Serialize)]
struct Set<'a> {
    key: &'a str,
    #[serde(with = "serde_bytes")]
    value: &'a [u8],
    flags: u64,
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A gRPC frame holding `etcdserverpb.PutRequest{key = 1, value = 2}`.
fn etcd_put(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(key.len() + value.len() + 8);
    msg.push(0x0a);
    varint(key.len(), &mut msg);
    msg.extend_from_slice(key);
    msg.push(0x12);
    varint(value.len(), &mut msg);
    msg.extend_from_slice(value);
    let mut frame = Vec::with_capacity(msg.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

impl Conn {
    async fn put(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let (client, req) = match self {
            Conn::Http1 { client, addr } => {
                let mut body = Vec::new();
                ciborium::into_writer(
                    &Set {
                        key,
                        value,
                        flags: 0,
                    },
                    &mut body,
                )
                .map_err(|e| e.to_string())?;
                let req = hyper::Request::post(format!("http://{addr}/v1/apply/kv/set"))
                    .header("content-type", "application/cbor")
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| e.to_string())?;
                (client, req)
            }
            Conn::Grpc { client, addr } => {
                let req = hyper::Request::post(format!("http://{addr}/etcdserverpb.KV/Put"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(Full::new(Bytes::from(etcd_put(key.as_bytes(), value))))
                    .map_err(|e| e.to_string())?;
                (client, req)
            }
        };
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let collected = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let grpc_status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let body = collected.to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        if let Conn::Grpc { .. } = self
            && grpc_status.as_deref() != Some("0")
        {
            return Err(format!("grpc-status {grpc_status:?}"));
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn drive(target: &str, servers: Vec<String>, load: Load, grpc: bool) {
    let per_client = load.requests.div_ceil(load.clients);
    let warmup = (per_client / 20).max(1);
    let value = vec![b'v'; load.value_size];
    let start_barrier = std::sync::Arc::new(tokio::sync::Barrier::new(load.clients + 1));
    let mut tasks = Vec::new();
    for c in 0..load.clients {
        let addr = servers[c % servers.len()].clone();
        let client = if grpc {
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector())
        } else {
            Client::builder(TokioExecutor::new()).build(connector())
        };
        let conn = if grpc {
            Conn::Grpc { client, addr }
        } else {
            Conn::Http1 { client, addr }
        };
        let value = value.clone();
        let barrier = start_barrier.clone();
        let key_size = load.key_size;
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for n in 0..warmup {
                let key = format!("w{c:03}{n:0width$}", width = key_size.saturating_sub(4));
                if let Err(e) = conn
                    .put(&key[..key.len().min(key_size.max(5))], &value)
                    .await
                {
                    errors.push(e);
                }
            }
            barrier.wait().await;
            let mut lat = Vec::with_capacity(per_client);
            for n in 0..per_client {
                let id = c * per_client + n;
                let key = format!("{id:0width$}", width = key_size);
                let t = Instant::now();
                match conn.put(&key, &value).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => errors.push(e),
                }
            }
            (lat, errors)
        }));
    }
    start_barrier.wait().await;
    let t0 = Instant::now();
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok((l, e)) => {
                lat.extend(l);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("client task failed: {e}")),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort();
    let ok = lat.len();
    let throughput = ok as f64 / secs;
    let (p50, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default(),
    );
    println!(
        "{target}: clients={} requests={ok} errors={} {throughput:.0} writes/s p50={:.2}ms p99={:.2}ms max={:.2}ms",
        load.clients,
        errors.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    for e in errors.iter().take(3) {
        eprintln!("  error: {e}");
    }
    println!(
        "{}",
        serde_json::json!({
            "target": target, "clients": load.clients, "requests": ok + errors.len(), "ok": ok,
            "errors": errors.len(), "seconds": secs, "throughput": throughput,
            "p50_ms": ms(p50), "p99_ms": ms(p99), "max_ms": ms(max),
        })
    );
}

fn fsync(dir: &std::path::Path, count: usize) -> Result<(), String> {
    let path = dir.join(format!("loadgen-fsync-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let block = [b'x'; 256];
    let mut lat = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&block).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        lat.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "fsync: count={count} p50={:.3}ms p99={:.3}ms",
        ms(p50),
        ms(p99)
    );
    println!(
        "{}",
        serde_json::json!({"target": "fsync", "count": count, "p50_ms": ms(p50), "p99_ms": ms(p99)})
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Target::Fsync { dir, count } = &cli.target {
        if let Err(e) = fsync(dir, *count) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async {
        match cli.target {
            Target::Fsmhost { addr, load } => drive("fsmhost", addr, load, false).await,
            Target::Etcd { endpoints, load } => drive("etcd", endpoints, load, true).await,
            Target::Fsync { .. } => {}
        }
    });
}
