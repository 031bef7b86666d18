//! `loadgen`: drives a cluster with C concurrent clients and reports throughput and
//! p50/p99/max latency; kept out of the product binary.
//!
//! - `loadgen fsmhost --addr H:P[,H:P..]`: Consul-style KV writes, `POST /v1/apply/kv/set`
//!   with a CBOR `{key, value, flags}` body, over keep-alive HTTP/1.1 (one connection per
//!   client). `--op kv-put` writes through Consul's KV API instead (`PUT /v1/kv/<key>`);
//!   `--op kv-get` and `--op kv-get-stale` read keys of `--keyspace` (written first by a
//!   `kv-put` run) with `GET /v1/kv/<key>` (`?stale`). `--op catalog-register` registers
//!   one node with one instance of `--service` per request (`PUT /v1/catalog/register`,
//!   Consul's body); `--op catalog-service` and `--op health-service` read every instance
//!   of `--service` (`GET /v1/catalog/service/<name>`, `GET /v1/health/service/<name>`).
//! - `loadgen watchers --addr H:P --count N --pid P`: holds N blocking reads of one key open
//!   at once (`?index=&wait=10m`, one connection each), reports the server's resident memory
//!   per waiter (from `/proc/P/status`), then writes the key once and reports how long the
//!   write took to wake every waiter.
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
    /// What each request does (fsmhost only): `apply` (`POST /v1/apply/kv/set`), `kv-put`,
    /// `kv-get` or `kv-get-stale` (Consul's KV API), `catalog-register`, `catalog-service`
    /// or `health-service` (Consul's catalog and health API).
    #[arg(long, default_value = "apply", value_parser = ["apply", "kv-put", "kv-get", "kv-get-stale", "catalog-register", "catalog-service", "health-service"])]
    op: String,
    /// The service the catalog operations register or read.
    #[arg(long, default_value = "web")]
    service: String,
    /// Reads pick keys among the first `keyspace` ids (0: every id, as writes do).
    #[arg(long, default_value_t = 0)]
    keyspace: usize,
    /// A CA file: speak HTTPS to `--addr https://host:port`, checking the server's
    /// certificate (KV operations only), with fsmhost's own client.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// An ACL token sent with every request (`X-Consul-Token`; KV operations only).
    #[arg(long)]
    token: Option<String>,
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
    /// Holds blocking reads open on one fsmhost server, then wakes them with one write.
    Watchers {
        /// The server's HTTP address.
        #[arg(long)]
        addr: String,
        /// How many blocking reads.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The server's process id (for its resident memory).
        #[arg(long)]
        pid: u32,
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
    /// fsmhost's own client (TLS and a token), for the KV operations.
    Rpc {
        client: fsmhost::raft::network::RpcClient,
        addr: String,
    },
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

/// A catalog request: the method, the path and the body.
fn catalog_request(op: &str, service: &str, key: &str) -> (hyper::Method, String, Vec<u8>) {
    match op {
        "catalog-register" => {
            let body = serde_json::json!({
                "Node": format!("node-{key}"),
                "Address": "10.0.0.1",
                "Service": {"ID": format!("{service}-{key}"), "Service": service, "Port": 8080},
                "Check": {"CheckID": format!("check-{key}"), "Name": "http", "Status": "passing",
                          "ServiceID": format!("{service}-{key}")},
            });
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            (hyper::Method::PUT, "/v1/catalog/register".into(), bytes)
        }
        "catalog-service" => (
            hyper::Method::GET,
            format!("/v1/catalog/service/{service}"),
            Vec::new(),
        ),
        _ => (
            hyper::Method::GET,
            format!("/v1/health/service/{service}"),
            Vec::new(),
        ),
    }
}

impl Conn {
    async fn send(&self, op: &str, service: &str, key: &str, value: &[u8]) -> Result<(), String> {
        let (client, req) = match self {
            Conn::Rpc { client, addr } => {
                let (method, query, body) = match op {
                    "kv-put" => (hyper::Method::PUT, "", value.to_vec()),
                    "kv-get" => (hyper::Method::GET, "", Vec::new()),
                    "kv-get-stale" => (hyper::Method::GET, "?stale", Vec::new()),
                    other => {
                        return Err(format!(
                            "--ca-file/--token serve KV operations, not {other}"
                        ));
                    }
                };
                let path = format!("/v1/kv/{key}{query}");
                return client
                    .request(method, addr, &path, body, Duration::from_secs(30))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
            }
            Conn::Http1 { client, addr }
                if op.starts_with("catalog-") || op == "health-service" =>
            {
                let (method, path, body) = catalog_request(op, service, key);
                let req = hyper::Request::builder()
                    .method(method)
                    .uri(format!("http://{addr}{path}"))
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| e.to_string())?;
                (client, req)
            }
            Conn::Http1 { client, addr } if op != "apply" => {
                let (method, query, body) = match op {
                    "kv-put" => (hyper::Method::PUT, "", value.to_vec()),
                    "kv-get" => (hyper::Method::GET, "", Vec::new()),
                    _ => (hyper::Method::GET, "?stale", Vec::new()),
                };
                let req = hyper::Request::builder()
                    .method(method)
                    .uri(format!("http://{addr}/v1/kv/{key}{query}"))
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| e.to_string())?;
                (client, req)
            }
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
        let secure = load.ca_file.is_some() || load.token.is_some();
        let conn = if grpc {
            Conn::Grpc { client, addr }
        } else if secure {
            let rpc = match &load.ca_file {
                Some(ca) => {
                    let settings = fsmhost::tls::TlsSettings {
                        ca_file: Some(ca.clone()),
                        verify_outgoing: true,
                        peer_name: fsmhost::tls::PeerName::Dialled,
                        ..Default::default()
                    };
                    let tls = fsmhost::tls::Tls::load("--ca-file", settings)
                        .unwrap_or_else(|e| panic!("{e}"));
                    fsmhost::raft::network::RpcClient::with_tls(&tls)
                        .unwrap_or_else(|e| panic!("{e}"))
                }
                None => fsmhost::raft::network::RpcClient::new(),
            };
            Conn::Rpc {
                client: rpc.with_token(load.token.clone()),
                addr,
            }
        } else {
            Conn::Http1 { client, addr }
        };
        let value = value.clone();
        let barrier = start_barrier.clone();
        let key_size = load.key_size;
        let (op, keyspace, service) = (load.op.clone(), load.keyspace, load.service.clone());
        // Warm-up registrations go to another service, so that the measured one holds
        // exactly the measured requests' instances.
        let warmup_service = if op == "catalog-register" {
            format!("{service}-warmup")
        } else {
            service.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for n in 0..warmup {
                let key = if op.starts_with("kv-get") {
                    format!("{:0key_size$}", n % keyspace.max(1))
                } else {
                    format!("w{c:03}{n:0width$}", width = key_size.saturating_sub(4))
                };
                if let Err(e) = conn
                    .send(
                        &op,
                        &warmup_service,
                        &key[..key.len().min(key_size.max(5))],
                        &value,
                    )
                    .await
                {
                    errors.push(e);
                }
            }
            barrier.wait().await;
            let mut lat = Vec::with_capacity(per_client);
            for n in 0..per_client {
                let mut id = c * per_client + n;
                if keyspace > 0 {
                    id %= keyspace;
                }
                let key = format!("{id:0width$}", width = key_size);
                let t = Instant::now();
                match conn.send(&op, &service, &key, &value).await {
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
        "{target} {}: clients={} requests={ok} errors={} {throughput:.0} requests/s p50={:.2}ms p99={:.2}ms max={:.2}ms",
        load.op,
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
            "target": target, "op": load.op, "clients": load.clients, "requests": ok + errors.len(), "ok": ok,
            "errors": errors.len(), "seconds": secs, "throughput": throughput,
            "p50_ms": ms(p50), "p99_ms": ms(p99), "max_ms": ms(max),
        })
    );
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// One request on a fresh connection; the status and the `X-Consul-Index` header.
async fn once(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: hyper::Method,
    uri: String,
    body: &[u8],
) -> Result<(u16, u64), String> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from(body.to_vec())))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let index = resp
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, index))
}

async fn watchers(addr: String, count: usize, pid: u32) -> Result<(), String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector());
    let key = format!("http://{addr}/v1/kv/watched");
    let (_, index) = once(&client, hyper::Method::PUT, key.clone(), b"0").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss(pid)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..count {
        // One client (so one connection) per waiter, as separate applications would have.
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector());
        let (uri, tx) = (format!("{key}?index={index}&wait=10m"), tx.clone());
        tokio::spawn(async move {
            let r = once(&client, hyper::Method::GET, uri, b"").await;
            let _ = tx.send((Instant::now(), r));
        });
    }
    // Wait until the server holds every read: its memory stops growing.
    let mut last = 0;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss(pid)?;
        if now == last {
            break;
        }
        last = now;
    }
    let held = rss(pid)?;
    let per_waiter = held.saturating_sub(before) as f64 / count as f64;
    let t0 = Instant::now();
    let (_, woke_at) = once(&client, hyper::Method::PUT, key.clone(), b"1").await?;
    let write_done = t0.elapsed();
    let mut lat = Vec::with_capacity(count);
    let mut errors = 0;
    for _ in 0..count {
        match rx.recv().await {
            Some((at, Ok((200, i)))) if i >= woke_at => lat.push(at.saturating_duration_since(t0)),
            Some(_) => errors += 1,
            None => break,
        }
    }
    lat.sort();
    let (p50, all) = (
        percentile(&lat, 0.5),
        lat.last().copied().unwrap_or_default(),
    );
    println!(
        "watchers: count={count} woken={} errors={errors} server RSS {:.1} MiB -> {:.1} MiB, {per_waiter:.0} bytes per waiter; write {:.2}ms, woken p50={:.1}ms all={:.1}ms",
        lat.len(),
        before as f64 / 1048576.0,
        held as f64 / 1048576.0,
        ms(write_done),
        ms(p50),
        ms(all)
    );
    println!(
        "{}",
        serde_json::json!({"target": "watchers", "count": count, "woken": lat.len(), "errors": errors,
            "rss_before": before, "rss_held": held, "bytes_per_waiter": per_waiter,
            "write_ms": ms(write_done), "wake_p50_ms": ms(p50), "wake_all_ms": ms(all)})
    );
    Ok(())
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
            Target::Watchers { addr, count, pid } => {
                if let Err(e) = watchers(addr, count, pid).await {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            }
            Target::Etcd { endpoints, load } => drive("etcd", endpoints, load, true).await,
            Target::Fsync { .. } => {}
        }
    });
}
