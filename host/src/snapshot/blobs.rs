//! Content-addressed files that a log entry names by SHA-256 (a user restore's `state.bin`):
//! the leader stores one before it proposes the entry, and a server that applies the entry
//! without having it fetches it from a peer and checks the hash.
//!
//! Owns: `<data_dir>/raft/blobs/<sha256 hex>`, with a marker `<sha256>.applied` holding the
//! raft index a blob's entry was applied at.
//!
//! Invariants: a file under a hash name has that SHA-256 (it is written under a `.tmp`
//! name, checked, then renamed); a blob is removed only once this server's log is compacted
//! past the entry that names it (replaying the log no longer needs it), and the newest
//! applied blob is kept even then, for peers still catching up; a blob no entry ever
//! applied (pushed for an install or restore that never committed) is removed once it is
//! older than [`ORPHAN_AGE`].

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::SnapshotError;

/// How long a blob that no applied entry names may stay (it was pushed or stored for an
/// entry that never committed, or by a peer that has no business pushing it).
pub const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The blob directory of one server.
#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
}

/// Whether `s` is a SHA-256 in lower-case hex (a blob name; never a path).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The SHA-256 (hex) and size of the file at `path`.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((hex::encode(h.finalize()), size));
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
}

impl Blobs {
    /// Opens (creating it) the blob directory and removes `.tmp` leftovers.
    pub fn open(dir: PathBuf) -> Result<Self, SnapshotError> {
        std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::at(&dir, e))?;
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| SnapshotError::at(&dir, e))?
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Blobs { dir })
    }

    /// Where the blob `sha256` lives (whether or not it is there). Refuses a name that is
    /// not a SHA-256.
    pub fn path(&self, sha256: &str) -> Result<PathBuf, SnapshotError> {
        if !is_sha256(sha256) {
            return Err(SnapshotError::Corrupt(format!(
                "{sha256:?} is not a SHA-256 in hex"
            )));
        }
        Ok(self.dir.join(sha256))
    }

    /// A fresh temporary path in the blob directory.
    pub fn tmp_path(&self) -> PathBuf {
        let mut n = [0u8; 8];
        let _ = getrandom::fill(&mut n);
        self.dir
            .join(format!("incoming-{:016x}.tmp", u64::from_le_bytes(n)))
    }

    /// Moves the file at `src` into the store under its hash; returns the hash and size.
    /// `expected` (when given) must match, or the file is removed and refused.
    pub fn adopt(
        &self,
        src: &Path,
        expected: Option<&str>,
    ) -> Result<(String, u64), SnapshotError> {
        let (sha, size) = hash_file(src).map_err(|e| SnapshotError::at(src, e))?;
        if let Some(want) = expected
            && want != sha
        {
            let _ = std::fs::remove_file(src);
            return Err(SnapshotError::Corrupt(format!(
                "blob has SHA-256 {sha}, {want} was asked for"
            )));
        }
        let dst = self.path(&sha)?;
        std::fs::rename(src, &dst).map_err(|e| SnapshotError::at(&dst, e))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok((sha, size))
    }

    /// Records that the entry naming `sha256` was applied at raft `index`.
    pub fn mark_applied(&self, sha256: &str, index: u64) {
        if let Ok(p) = self.path(sha256) {
            let _ = std::fs::write(p.with_extension("applied"), index.to_string());
        }
    }

    /// Removes every blob whose entry was applied at or below `purged` (the log no longer
    /// holds it), except the newest applied one.
    pub fn prune(&self, purged: u64) {
        let mut applied: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "applied"))
            .filter_map(|e| {
                let index = std::fs::read_to_string(e.path())
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                Some((index, e.path()))
            })
            .collect();
        applied.sort();
        applied.pop(); // the newest stays
        for (index, marker) in applied {
            if index <= purged {
                tracing::info!(target: "agent.server.snapshot",
                    "removing restored blob: path={}", marker.with_extension("").display());
                let _ = std::fs::remove_file(marker.with_extension(""));
                let _ = std::fs::remove_file(&marker);
            }
        }
    }

    /// Removes every blob older than `max_age` that no applied entry names (no
    /// `.applied` marker); returns how many.
    pub fn remove_orphans(&self, max_age: std::time::Duration) -> usize {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_sha256(&name) || path.with_extension("applied").exists() {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > max_age);
            if old && std::fs::remove_file(&path).is_ok() {
                tracing::info!(target: "agent.server.snapshot",
                    "removed a blob no entry applied: path={}", path.display());
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn orphans_go_after_the_deadline_and_applied_blobs_stay() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_path_buf()).unwrap();
        let write = |name: &str, age: Duration| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            let f = File::options().write(true).open(&path).unwrap();
            f.set_modified(SystemTime::now() - age).unwrap();
            path
        };
        let hour = Duration::from_secs(3600);
        let orphan = write(&"a".repeat(64), 2 * hour);
        let young = write(&"b".repeat(64), Duration::ZERO);
        let applied = write(&"c".repeat(64), 2 * hour);
        std::fs::write(applied.with_extension("applied"), "7").unwrap();
        let other = write("notes.txt", 2 * hour);
        assert_eq!(blobs.remove_orphans(hour), 1);
        assert!(!orphan.exists());
        assert!(young.exists() && applied.exists() && other.exists());
    }
}
