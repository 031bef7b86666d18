//! Raft snapshots on disk, laid out as Consul (hashicorp/raft's file snapshot store) lays
//! them out:
//!
//! ```text
//! <data_dir>/raft/snapshots/TERM-INDEX-TIMESTAMPMS/meta.json
//! <data_dir>/raft/snapshots/TERM-INDEX-TIMESTAMPMS/state.bin
//! ```
//!
//! Owns: naming, `meta.json` (Consul's fields, with the CRC-64 of `state.bin`), writing
//! under a `.tmp` name then renaming, reaping all but the newest `retain`, and removing
//! `.tmp` leftovers of a crash at start.
//!
//! Invariants: a directory without the `.tmp` suffix is complete and synced (both files
//! fsynced, then the directory renamed and its parent fsynced); `meta.json`'s `Size` and
//! `CRC` describe `state.bin` byte for byte, and [`verify`] checks both.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::SnapshotError;
use super::state_file::{self, StateHeader};
use crate::state::Tables;

/// Consul's `meta.json` (`raft.SnapshotMeta` plus the CRC of `state.bin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Snapshot format version (1, as Consul's).
    #[serde(rename = "Version")]
    pub version: u32,
    /// `TERM-INDEX-TIMESTAMPMS`, the directory's name.
    #[serde(rename = "ID")]
    pub id: String,
    /// The raft index of the last entry in the snapshot.
    #[serde(rename = "Index")]
    pub index: u64,
    /// Its term.
    #[serde(rename = "Term")]
    pub term: u64,
    /// The legacy peer list: base64 of the msgpack array of the voters' server addresses.
    #[serde(rename = "Peers")]
    pub peers: String,
    /// The raft configuration as of the snapshot.
    #[serde(rename = "Configuration")]
    pub configuration: Configuration,
    /// The raft index of that configuration.
    #[serde(rename = "ConfigurationIndex")]
    pub configuration_index: u64,
    /// Bytes of `state.bin`.
    #[serde(rename = "Size")]
    pub size: u64,
    /// base64 of the big-endian CRC-64/ECMA (Go's `crc64.ECMA`) of `state.bin`.
    #[serde(rename = "CRC")]
    pub crc: String,
}

/// A raft configuration as `meta.json` records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    /// The servers.
    #[serde(rename = "Servers")]
    pub servers: Vec<ServerEntry>,
}

/// One server of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEntry {
    /// 0: voter; 1: non-voter (hashicorp/raft's `ServerSuffrage`).
    #[serde(rename = "Suffrage")]
    pub suffrage: u8,
    /// The node id, as `operator raft list-peers` shows it.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its server (raft) address.
    #[serde(rename = "Address")]
    pub address: String,
}

/// The CRC meta.json records: Go's `crc64.New(crc64.MakeTable(crc64.ECMA))`.
const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// A writer that counts bytes and computes the CRC of what passes through it.
pub struct CrcWriter<W> {
    inner: W,
    digest: crc::Digest<'static, u64>,
    size: u64,
}

impl<W: Write> CrcWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            digest: CRC64.digest(),
            size: 0,
        }
    }

    /// The inner writer, the byte count and the CRC (as meta.json writes it).
    pub fn finish(self) -> (W, u64, String) {
        let crc = self.digest.finalize();
        (self.inner, self.size, encode_crc(crc))
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that counts bytes and computes the CRC of what it reads.
pub struct CrcReader<R> {
    inner: R,
    digest: crc::Digest<'static, u64>,
    size: u64,
}

impl<R: Read> CrcReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        CrcReader {
            inner,
            digest: CRC64.digest(),
            size: 0,
        }
    }

    /// Reads what is left (so the CRC covers the whole stream), then returns the byte
    /// count and the CRC.
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.size, encode_crc(self.digest.finalize())))
    }
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

fn encode_crc(crc: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// msgpack of an array of strings (Consul's legacy `Peers` encoding).
fn msgpack_strings(items: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    match items.len() {
        n if n < 16 => out.push(0x90 | n as u8),
        n if n <= 0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0xdd);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    for s in items {
        match s.len() {
            n if n < 32 => out.push(0xa0 | n as u8),
            n if n <= 0xff => out.extend_from_slice(&[0xd9, n as u8]),
            n if n <= 0xffff => {
                out.push(0xda);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0xdb);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
        out.extend_from_slice(s.as_bytes());
    }
    out
}

impl Meta {
    /// The meta of a `state.bin` of `size` bytes with this `crc`, written with `header`, at
    /// `timestamp_ms`.
    pub fn new(header: &StateHeader, timestamp_ms: u64, size: u64, crc: String) -> Self {
        let (term, index) = header
            .last_log_id
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        let membership = header.membership.membership();
        let mut servers = Vec::new();
        for (id, node) in membership.nodes() {
            let voter = membership.voter_ids().any(|v| v == *id);
            servers.push(ServerEntry {
                suffrage: if voter { 0 } else { 1 },
                id: format!("{id:016x}"),
                address: node.rpc_addr.clone(),
            });
        }
        let voters: Vec<String> = servers
            .iter()
            .filter(|s| s.suffrage == 0)
            .map(|s| s.address.clone())
            .collect();
        Meta {
            version: 1,
            id: format!("{term}-{index}-{timestamp_ms}"),
            index,
            term,
            peers: base64::engine::general_purpose::STANDARD.encode(msgpack_strings(&voters)),
            configuration: Configuration { servers },
            configuration_index: header.membership.log_id().map_or(0, |l| l.index),
            size,
            crc,
        }
    }
}

/// A snapshot directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDir {
    /// Its path.
    pub path: PathBuf,
    /// Term, index and timestamp parsed from its name.
    pub term: u64,
    /// The raft index.
    pub index: u64,
    /// Milliseconds since the epoch when it was taken.
    pub timestamp_ms: u64,
}

impl SnapshotDir {
    /// `state.bin` inside it.
    pub fn state_path(&self) -> PathBuf {
        self.path.join("state.bin")
    }
}

/// Parses `TERM-INDEX-TIMESTAMPMS`.
fn parse_name(name: &str) -> Option<(u64, u64, u64)> {
    let mut parts = name.split('-');
    let term = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    let ts = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((term, index, ts))
}

/// Reads a snapshot directory's `meta.json`.
pub fn read_meta(dir: &Path) -> Result<Meta, SnapshotError> {
    let path = dir.join("meta.json");
    let text = std::fs::read(&path).map_err(|e| SnapshotError::at(&path, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| SnapshotError::Corrupt(format!("{}: {e}", path.display())))
}

/// Checks `state.bin` against `meta.json` (size and CRC) by reading it whole; returns the
/// meta. A flipped byte anywhere is caught here.
pub fn verify(dir: &Path) -> Result<Meta, SnapshotError> {
    let meta = read_meta(dir)?;
    let path = dir.join("state.bin");
    let file = File::open(&path).map_err(|e| SnapshotError::at(&path, e))?;
    let (size, crc) = CrcReader::new(BufReader::with_capacity(1 << 20, file))
        .finish()
        .map_err(|e| SnapshotError::at(&path, e))?;
    if size != meta.size {
        return Err(SnapshotError::Corrupt(format!(
            "{}: {size} bytes, meta.json says {}",
            path.display(),
            meta.size
        )));
    }
    if crc != meta.crc {
        return Err(SnapshotError::Corrupt(format!(
            "{}: CRC {crc} does not match meta.json's {}",
            path.display(),
            meta.crc
        )));
    }
    Ok(meta)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The snapshot directory of one server.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    retain: usize,
}

impl SnapshotStore {
    /// Opens (creating it) the snapshot directory, keeping the newest `retain` snapshots
    /// (at least 1), and removes the `.tmp` leftovers of an interrupted write or receive.
    pub fn open(dir: PathBuf, retain: usize) -> Result<Self, SnapshotError> {
        std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::at(&dir, e))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| SnapshotError::at(&dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                tracing::warn!(target: "agent.server.snapshot",
                    "removing incomplete snapshot: path={}", path.display());
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| SnapshotError::at(&path, e))?;
            }
        }
        Ok(SnapshotStore {
            dir,
            retain: retain.max(1),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Complete snapshots, newest first (by index, then term, then time). Names that are
    /// not `TERM-INDEX-TIMESTAMPMS` are left alone.
    pub fn list(&self) -> Vec<SnapshotDir> {
        let mut out: Vec<SnapshotDir> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (term, index, timestamp_ms) = parse_name(&name)?;
                e.path().is_dir().then(|| SnapshotDir {
                    path: e.path(),
                    term,
                    index,
                    timestamp_ms,
                })
            })
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse((d.index, d.term, d.timestamp_ms)));
        out
    }

    /// Writes a snapshot of `tables` with `header`, logging Consul's lines: under
    /// `TERM-INDEX-NOW.tmp`, both files fsynced, renamed, then older snapshots reaped.
    pub fn create(
        &self,
        tables: &Tables,
        header: &StateHeader,
    ) -> Result<SnapshotDir, SnapshotError> {
        self.finalize(header, |state_path| {
            let file = File::create(state_path)?;
            let w = CrcWriter::new(io::BufWriter::with_capacity(1 << 20, file));
            let w = state_file::write(tables, header, w)?;
            let (w, size, crc) = w.finish();
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok((size, crc))
        })
    }

    /// Turns a received `state.bin` (at `received`, already read through whole by the
    /// caller, who computed its `size` and `crc`) into a snapshot directory.
    pub fn adopt(
        &self,
        received: &Path,
        header: &StateHeader,
        size: u64,
        crc: String,
    ) -> Result<SnapshotDir, SnapshotError> {
        self.finalize(header, |state_path| {
            File::open(received)?.sync_all()?;
            std::fs::rename(received, state_path)?;
            Ok((size, crc))
        })
    }

    /// A fresh path for a snapshot being received (a `.tmp` name: removed at start if the
    /// receive never finished).
    pub fn receiving_path(&self) -> PathBuf {
        self.tmp_path("receiving")
    }

    /// A fresh `<what>-<ms>-<random>.tmp` path in the snapshot directory, for temporary
    /// files and directories (archives being sent or received); removed at start if left.
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        let mut n = [0u8; 8];
        let _ = getrandom::fill(&mut n);
        self.dir.join(format!(
            "{what}-{}-{:016x}.tmp",
            crate::clock::now_ms(),
            u64::from_le_bytes(n)
        ))
    }

    fn finalize(
        &self,
        header: &StateHeader,
        write_state: impl FnOnce(&Path) -> io::Result<(u64, String)>,
    ) -> Result<SnapshotDir, SnapshotError> {
        let (term, index) = header
            .last_log_id
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        let mut timestamp_ms = crate::clock::now_ms();
        // Two snapshots of the same point in the same millisecond get distinct names.
        while self
            .dir
            .join(format!("{term}-{index}-{timestamp_ms}"))
            .exists()
        {
            timestamp_ms += 1;
        }
        let name = format!("{term}-{index}-{timestamp_ms}");
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(&name);
        tracing::info!(target: "agent.server.snapshot", "creating new snapshot: path={}", tmp.display());
        let result = (|| -> io::Result<()> {
            std::fs::create_dir(&tmp)?;
            let (size, crc) = write_state(&tmp.join("state.bin"))?;
            let meta = Meta::new(header, timestamp_ms, size, crc);
            let mut f = File::create(tmp.join("meta.json"))?;
            serde_json::to_writer_pretty(&mut f, &meta)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            sync_dir(&tmp)?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(SnapshotError::at(&tmp, e));
        }
        self.reap();
        Ok(SnapshotDir {
            path,
            term,
            index,
            timestamp_ms,
        })
    }

    /// Removes all but the newest `retain` snapshots.
    pub fn reap(&self) {
        for old in self.list().into_iter().skip(self.retain) {
            tracing::info!(target: "agent.server.snapshot", "reaping snapshot: path={}", old.path.display());
            if let Err(e) = std::fs::remove_dir_all(&old.path) {
                tracing::warn!(target: "agent.server.snapshot",
                    "failed to reap snapshot: path={} error={e}", old.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_consuls_msgpack() {
        // The article's example: three addresses, as hashicorp/raft encodes them.
        let peers = ["10.10.0.3:8300", "10.10.0.4:8300", "10.10.0.2:8300"].map(String::from);
        let encoded = base64::engine::general_purpose::STANDARD.encode(msgpack_strings(&peers));
        assert_eq!(
            encoded,
            "k64xMC4xMC4wLjM6ODMwMK4xMC4xMC4wLjQ6ODMwMK4xMC4xMC4wLjI6ODMwMA=="
        );
    }

    #[test]
    fn crc_is_gos_crc64_ecma() {
        // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ECMA)) = 0x995dc9bbdf1939fa
        let mut w = CrcWriter::new(Vec::new());
        w.write_all(b"123456789").unwrap();
        let (_, size, crc) = w.finish();
        assert_eq!(size, 9);
        assert_eq!(crc, encode_crc(0x995d_c9bb_df19_39fa));
    }

    #[test]
    fn names_parse_strictly() {
        assert_eq!(
            parse_name("49-110398-1602903144301"),
            Some((49, 110398, 1602903144301))
        );
        assert_eq!(parse_name("49-110398-1602903144301.tmp"), None);
        assert_eq!(parse_name("49-110398"), None);
        assert_eq!(parse_name("a-1-2"), None);
        assert_eq!(parse_name("1-2-3-4"), None);
    }
}
