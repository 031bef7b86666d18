//! `fsmhost snapshot save|restore|inspect`, as Consul's: save streams `GET /v1/snapshot` to
//! a file and reads it back to verify it before it takes the file's name; restore streams a
//! file to `PUT /v1/snapshot`; inspect reads an archive, or a raw snapshot directory from
//! `<data_dir>/raft/snapshots/`, without a server. Long transfers show their progress on a
//! terminal.

use super::Api;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http_body;
use crate::snapshot::archive;
use crate::snapshot::state_file::{StateReader, TableStats};
use crate::snapshot::store::{self, Meta};

/// How long the server may take before it starts answering (it takes a raft snapshot and
/// packs it first, or checks and commits a restore).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3600);

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

/// A progress line on stderr, only when stderr is a terminal.
struct ProgressLine {
    verb: &'static str,
    started: Instant,
    last: AtomicU64,
}

impl ProgressLine {
    fn new(verb: &'static str) -> Option<Arc<Self>> {
        std::io::stderr().is_terminal().then(|| {
            Arc::new(ProgressLine {
                verb,
                started: Instant::now(),
                last: AtomicU64::new(0),
            })
        })
    }

    fn update(&self, bytes: u64) {
        let ms = self.started.elapsed().as_millis() as u64;
        if ms.saturating_sub(self.last.load(Ordering::Relaxed)) < 200 {
            return;
        }
        self.last.store(ms, Ordering::Relaxed);
        let rate = bytes as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r{} {} ({}/s)   ",
            self.verb,
            human(bytes),
            human(rate as u64)
        );
    }

    fn done(&self, bytes: u64) {
        eprintln!(
            "\r{} {} in {:.1?}   ",
            self.verb,
            human(bytes),
            self.started.elapsed()
        );
    }
}

/// Bytes as Consul prints them (`2.9KB`, `4.3GB`).
fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// `snapshot save FILE`.
pub fn save(addr: &Api, file: &Path, stale: bool) -> Result<(), String> {
    let part = PathBuf::from(format!("{}.part", file.display()));
    let path = if stale {
        "/v1/snapshot?stale"
    } else {
        "/v1/snapshot"
    };
    let progress = ProgressLine::new("Saved");
    let (index, size) = runtime()?.block_on(async {
        let response = addr
            .client()?
            .stream(
                hyper::Method::GET,
                &addr.addr(),
                path,
                None,
                http_body::full(bytes::Bytes::new()),
                ANSWER_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let p = progress.clone();
        let body = http_body_util::BodyExt::map_frame(response.into_body(), {
            let seen = AtomicU64::new(0);
            move |frame| {
                if let (Some(p), Some(d)) = (&p, frame.data_ref()) {
                    p.update(seen.fetch_add(d.len() as u64, Ordering::Relaxed) + d.len() as u64);
                }
                frame
            }
        });
        let size = http_body::to_file(body, &part, u64::MAX)
            .await
            .map_err(|e| format!("{}: {e}", part.display()))?;
        Ok::<_, String>((index, size))
    })?;
    if let Some(p) = &progress {
        p.done(size);
    }
    // Read it back whole before it takes the file's name.
    let verified = verify_archive(&part);
    if let Err(e) = verified {
        let _ = std::fs::remove_file(&part);
        return Err(format!("the saved snapshot does not verify: {e}"));
    }
    std::fs::rename(&part, file).map_err(|e| format!("{}: {e}", file.display()))?;
    match index {
        Some(i) => println!("Saved and verified snapshot to index {i}"),
        None => println!("Saved and verified snapshot"),
    }
    Ok(())
}

/// Reads an archive whole: names, SHA256SUMS, size and CRC, and every record of state.bin.
fn verify_archive(path: &Path) -> Result<(Meta, Vec<TableStats>, StateHeaderSummary), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = archive::read(std::io::BufReader::new(file), dir.path())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (stats, summary) = read_stats(&dir.path().join("state.bin"))?;
    Ok((meta, stats, summary))
}

/// What inspect prints of state.bin's header.
struct StateHeaderSummary {
    fsm_index: u64,
    plugins: Vec<(String, String, String)>,
}

fn read_stats(state: &Path) -> Result<(Vec<TableStats>, StateHeaderSummary), String> {
    let file = std::fs::File::open(state).map_err(|e| format!("{}: {e}", state.display()))?;
    let (header, stats) = StateReader::open(file)
        .and_then(StateReader::stats)
        .map_err(|e| format!("{}: {e}", state.display()))?;
    let summary = StateHeaderSummary {
        fsm_index: header.fsm_index,
        plugins: header
            .plugins
            .iter()
            .map(|p| (p.name.clone(), p.version.clone(), p.edition.clone()))
            .collect(),
    };
    Ok((stats, summary))
}

/// `snapshot restore FILE`.
pub fn restore(addr: &Api, file: &Path) -> Result<(), String> {
    let size = std::fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    let progress = ProgressLine::new("Sent");
    let p = progress.clone();
    let index = runtime()?.block_on(async {
        let report: Option<http_body::Progress> =
            p.map(|p| Box::new(move |n| p.update(n)) as http_body::Progress);
        let response = addr
            .client()?
            .stream(
                hyper::Method::PUT,
                &addr.addr(),
                "/v1/snapshot",
                None,
                http_body::file(file.to_path_buf(), false, report),
                ANSWER_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(
            response
                .headers()
                .get("X-Consul-Index")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        )
    })?;
    if let Some(p) = &progress {
        p.done(size);
    }
    match index {
        Some(i) => println!("Restored snapshot at index {i}"),
        None => println!("Restored snapshot"),
    }
    Ok(())
}

/// `snapshot inspect FILE|DIR`.
pub fn inspect(path: &Path, json: bool) -> Result<(), String> {
    let (meta, stats, summary) = if path.is_dir() {
        let meta = store::verify(path).map_err(|e| e.to_string())?;
        let (stats, summary) = read_stats(&path.join("state.bin"))?;
        (meta, stats, summary)
    } else {
        verify_archive(path)?
    };
    let total: u64 = stats.iter().map(|t| t.bytes).sum();
    if json {
        let out = serde_json::json!({
            "Meta": {
                "ID": meta.id,
                "Size": meta.size,
                "Index": meta.index,
                "Term": meta.term,
                "Version": meta.version,
                "FSMIndex": summary.fsm_index,
            },
            "Plugins": summary.plugins.iter().map(|(n, v, e)| serde_json::json!({
                "Name": n, "Version": v, "Edition": e,
            })).collect::<Vec<_>>(),
            "Stats": stats.iter().map(|t| serde_json::json!({
                "Name": t.name, "Plugin": t.plugin, "Count": t.records, "Sum": t.bytes,
            })).collect::<Vec<_>>(),
            "TotalSize": total,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(" ID           {}", meta.id);
    println!(" Size         {}", meta.size);
    println!(" Index        {}", meta.index);
    println!(" Term         {}", meta.term);
    println!(" Version      {}", meta.version);
    println!(" FSM Index    {}", summary.fsm_index);
    for (n, v, e) in &summary.plugins {
        println!(" Plugin       {n} {v} ({e})");
    }
    println!();
    let rule = || vec!["----".to_string(); 4];
    let mut rows = vec![
        vec![
            "Table".to_string(),
            "Plugin".into(),
            "Count".into(),
            "Size".into(),
        ],
        rule(),
    ];
    for t in &stats {
        rows.push(vec![
            t.name.clone(),
            t.plugin.clone(),
            t.records.to_string(),
            human(t.bytes),
        ]);
    }
    rows.push(rule());
    rows.push(vec![
        "Total".to_string(),
        String::new(),
        String::new(),
        human(total),
    ]);
    super::print_table(&rows, " ");
    Ok(())
}
