//! User snapshot archives, in Consul's format: a gzip-compressed tar holding, in this order,
//! `meta.json`, `state.bin` and `SHA256SUMS` (lines `"<sha256 hex>  <name>"`).
//!
//! Owns: writing an archive from a raft snapshot directory and reading one back into a
//! directory, streamed both ways (the tar and gzip layers never hold a file whole).
//!
//! Invariants, checked on read: exactly those three files, each once; every SHA-256 matches
//! its `SHA256SUMS` line; `state.bin` has the size and CRC `meta.json` gives; nothing follows
//! the gzip stream. A failed read leaves nothing behind in the destination.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use super::SnapshotError;
use super::store::{self, CrcReader, Meta};

/// A reader that hashes what it reads.
struct Sha256Reader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn tar_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(crate::clock::now_ms() / 1000);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Writes the archive of the raft snapshot in `dir` (its `meta.json` and `state.bin`) to
/// `out`. Returns the snapshot's meta.
pub fn write(dir: &Path, out: impl Write) -> Result<Meta, SnapshotError> {
    let meta_path = dir.join("meta.json");
    let state_path = dir.join("state.bin");
    let meta_bytes = std::fs::read(&meta_path).map_err(|e| SnapshotError::at(&meta_path, e))?;
    let meta: Meta = serde_json::from_slice(&meta_bytes)
        .map_err(|e| SnapshotError::Corrupt(format!("{}: {e}", meta_path.display())))?;
    let state = File::open(&state_path).map_err(|e| SnapshotError::at(&state_path, e))?;
    let size = state
        .metadata()
        .map_err(|e| SnapshotError::at(&state_path, e))?
        .len();
    let io_err = |e: io::Error| SnapshotError::Io(format!("writing the archive: {e}"));
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_data(
        &mut tar_header(meta_bytes.len() as u64),
        "meta.json",
        &meta_bytes[..],
    )
    .map_err(io_err)?;
    let mut state = Sha256Reader {
        inner: BufReader::with_capacity(1 << 20, state),
        hash: Sha256::new(),
    };
    tar.append_data(&mut tar_header(size), "state.bin", &mut state)
        .map_err(io_err)?;
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        hex::encode(Sha256::digest(&meta_bytes)),
        hex::encode(state.hash.finalize())
    );
    tar.append_data(
        &mut tar_header(sums.len() as u64),
        "SHA256SUMS",
        sums.as_bytes(),
    )
    .map_err(io_err)?;
    let gz = tar.into_inner().map_err(io_err)?;
    let mut out = gz.finish().map_err(io_err)?;
    out.flush().map_err(io_err)?;
    Ok(meta)
}

/// Reads an archive from `input` into `dest` (an existing, empty directory), leaving
/// `meta.json` and `state.bin` there, checked. On any error `dest` is emptied again.
pub fn read(input: impl Read, dest: &Path) -> Result<Meta, SnapshotError> {
    let result = read_into(input, dest);
    if result.is_err() {
        for name in ["meta.json", "state.bin"] {
            let _ = std::fs::remove_file(dest.join(name));
        }
    }
    result
}

fn read_into(input: impl Read, dest: &Path) -> Result<Meta, SnapshotError> {
    let bad = |m: String| SnapshotError::Corrupt(format!("archive: {m}"));
    let mut input = BufReader::with_capacity(1 << 20, input);
    let gz = flate2::bufread::GzDecoder::new(&mut input);
    let mut tar = tar::Archive::new(gz);
    let mut meta_bytes: Option<Vec<u8>> = None;
    let mut state_sum: Option<(String, u64, String)> = None;
    let mut sums: Option<String> = None;
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a gzip-compressed tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the tar: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| bad(format!("a file name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let twice = || bad(format!("{name} appears twice"));
        match name.as_str() {
            "meta.json" | "SHA256SUMS" => {
                if entry.size() > 16 << 20 {
                    return Err(bad(format!("{name} is {} bytes", entry.size())));
                }
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| bad(format!("reading {name}: {e}")))?;
                if name == "meta.json" {
                    if meta_bytes.replace(buf).is_some() {
                        return Err(twice());
                    }
                } else {
                    let text = String::from_utf8(buf)
                        .map_err(|_| bad("SHA256SUMS is not text".to_string()))?;
                    if sums.replace(text).is_some() {
                        return Err(twice());
                    }
                }
            }
            "state.bin" => {
                if state_sum.is_some() {
                    return Err(twice());
                }
                // Consul writes meta.json first; its declared size bounds what is
                // decompressed to disk, so a small archive cannot expand without bound.
                let declared = meta_bytes
                    .as_deref()
                    .and_then(|m| serde_json::from_slice::<Meta>(m).ok())
                    .map(|m| m.size)
                    .ok_or_else(|| bad("state.bin comes before a valid meta.json".into()))?;
                if entry.size() != declared {
                    return Err(bad(format!(
                        "state.bin is {} bytes in the tar; meta.json says {declared}",
                        entry.size()
                    )));
                }
                let path = dest.join("state.bin");
                let mut file = File::create(&path).map_err(|e| SnapshotError::at(&path, e))?;
                let mut hashing = Sha256Reader {
                    inner: CrcReader::new(&mut entry),
                    hash: Sha256::new(),
                };
                io::copy(&mut hashing, &mut file)
                    .map_err(|e| bad(format!("reading state.bin: {e}")))?;
                file.sync_all().map_err(|e| SnapshotError::at(&path, e))?;
                let sha = hex::encode(hashing.hash.finalize());
                let (size, crc) = hashing
                    .inner
                    .finish()
                    .map_err(|e| bad(format!("reading state.bin: {e}")))?;
                state_sum = Some((sha, size, crc));
            }
            other => return Err(bad(format!("unexpected file {other:?} in the archive"))),
        }
    }
    // Drain the tar's end and the gzip trailer (CRC-32, length), then demand the end.
    let mut gz = tar.into_inner();
    io::copy(&mut gz, &mut io::sink()).map_err(|e| bad(format!("after the tar: {e}")))?;
    drop(gz);
    let mut rest = [0u8; 1];
    match input.read(&mut rest) {
        Ok(0) => {}
        Ok(_) => return Err(bad("bytes follow the gzip stream".to_string())),
        Err(e) => return Err(bad(format!("after the gzip stream: {e}"))),
    }
    let meta_bytes = meta_bytes.ok_or_else(|| bad("no meta.json".to_string()))?;
    let (state_sha, size, crc) = state_sum.ok_or_else(|| bad("no state.bin".to_string()))?;
    let sums = sums.ok_or_else(|| bad("no SHA256SUMS".to_string()))?;
    check_sum(
        &sums,
        "meta.json",
        &hex::encode(Sha256::digest(&meta_bytes)),
    )?;
    check_sum(&sums, "state.bin", &state_sha)?;
    let meta: Meta =
        serde_json::from_slice(&meta_bytes).map_err(|e| bad(format!("meta.json: {e}")))?;
    if meta.size != size || meta.crc != crc {
        return Err(bad(format!(
            "state.bin is {size} bytes with CRC {crc}; meta.json says {} bytes with CRC {}",
            meta.size, meta.crc
        )));
    }
    let meta_path = dest.join("meta.json");
    std::fs::write(&meta_path, &meta_bytes).map_err(|e| SnapshotError::at(&meta_path, e))?;
    // The copy on disk is what a restore reads: check it once more as a whole.
    store::verify(dest)?;
    Ok(meta)
}

/// Checks the `SHA256SUMS` line of `name`.
fn check_sum(sums: &str, name: &str, actual: &str) -> Result<(), SnapshotError> {
    let line = sums.lines().find_map(|l| {
        let (sum, file) = l.split_once("  ")?;
        (file == name).then_some(sum)
    });
    match line {
        None => Err(SnapshotError::Corrupt(format!(
            "archive: SHA256SUMS has no line for {name}"
        ))),
        Some(sum) if sum != actual => Err(SnapshotError::Corrupt(format!(
            "archive: SHA-256 of {name} is {actual}, SHA256SUMS says {sum}"
        ))),
        Some(_) => Ok(()),
    }
}
