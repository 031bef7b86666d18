//! One segment file of the WAL: its name, header and records, and the scan that reads
//! them back at start.
//!
//! Layout: a 16-byte header (`FSMHWAL1` and the index of the segment's first entry,
//! little-endian), then one record per entry, each 8-byte aligned:
//!
//! ```text
//! len: u32 | crc: u32 (CRC-32C of payload) | batch: u64 (offset of its batch's first record)
//! head_crc: u32 (CRC-32C of the 16 bytes before) | pad: u32 (0)
//! payload: len bytes (the CBOR of the entry) | zero padding to 8
//! ```
//!
//! The records of one append batch are written with one `write` and made durable with one
//! `fdatasync` before the next batch is written. So after a crash only the last batch of
//! the last segment can be incomplete (a torn write, in any of its pages). A damaged
//! record followed by an intact record of a later batch was durable once: that is
//! corruption, never cut.
//!
//! Segments are zero-filled ahead of the records (see `writer.rs`), so that a sync
//! overwrites blocks in place instead of growing the file (which costs the filesystem a
//! journal commit): zeros after the last record are the clean end of a segment.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::raft::LogEntry;

/// The first bytes of every segment.
pub const MAGIC: &[u8; 8] = b"FSMHWAL1";
/// The header's size.
pub const HEADER: u64 = 16;
/// A record header's size.
const RECORD_HEADER: u64 = 24;
/// The largest record accepted when reading (a batch is bounded well below it).
const MAX_RECORD: u64 = 1 << 30;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The file name of the segment whose first entry is `first`.
pub fn file_name(first: u64) -> String {
    format!("{first:020}.wal")
}

/// The first index a segment file name stands for, if it is one.
pub fn parse_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".wal")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A new segment's header.
pub fn header(first: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&first.to_le_bytes());
    h
}

fn padded(len: u64) -> u64 {
    len.div_ceil(8) * 8
}

/// Appends to `out` the record of `payload`, part of the batch starting at `batch`.
pub fn push_record(out: &mut Vec<u8>, payload: &[u8], batch: u64) {
    let len = payload.len() as u32;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&CRC32C.checksum(payload).to_le_bytes());
    out.extend_from_slice(&batch.to_le_bytes());
    let head_crc = CRC32C.checksum(&out[start..start + 16]);
    out.extend_from_slice(&head_crc.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(payload);
    out.resize(start + record_size(payload.len() as u64) as usize, 0);
}

/// The size on disk of a record of `len` payload bytes.
pub fn record_size(len: u64) -> u64 {
    RECORD_HEADER + padded(len)
}

/// A record header's fields, if the header is intact.
struct Head {
    len: u64,
    crc: u32,
    batch: u64,
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let head = head.get(..RECORD_HEADER as usize)?;
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let mut batch = [0u8; 8];
    batch.copy_from_slice(&head[8..16]);
    let len = u64::from(word(0));
    (CRC32C.checksum(&head[..16]) == word(16) && word(20) == 0 && len <= MAX_RECORD).then(|| Head {
        len,
        crc: word(4),
        batch: u64::from_le_bytes(batch),
    })
}

/// Reads the payload of the record at `offset`, checked.
pub fn read_record(file: &File, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; RECORD_HEADER as usize];
    file.read_exact_at(&mut head, offset)?;
    let head = parse_head(&head).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "record header checksum mismatch",
        )
    })?;
    let mut payload = vec![0u8; head.len as usize];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER)?;
    if CRC32C.checksum(&payload) != head.crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "record checksum mismatch",
        ));
    }
    Ok(payload)
}

/// The intact record at `at` in `bytes`, if there is one.
fn intact_at(bytes: &[u8], at: usize) -> Option<Head> {
    let head = parse_head(bytes.get(at..)?)?;
    let start = at + RECORD_HEADER as usize;
    let payload = bytes.get(start..start + head.len as usize)?;
    (CRC32C.checksum(payload) == head.crc).then_some(head)
}

/// One record found by [`scan`]: where it is, and its entry.
pub struct Found {
    /// Its offset in the file.
    pub offset: u64,
    /// Its entry.
    pub entry: LogEntry,
}

/// What [`scan`] read from one segment.
pub struct Scanned {
    /// The index of the segment's first entry (from its header).
    pub first: u64,
    /// Its intact records, in order.
    pub records: Vec<Found>,
    /// Where the intact records end.
    pub end: u64,
    /// The file's length (zeros or a torn record may follow `end`).
    pub len: u64,
    /// Whether a torn record (not only zeros) follows `end`.
    pub torn: bool,
}

/// Why a segment cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The file could not be read.
    #[error("WAL segment {path}: {source}")]
    Io {
        /// The segment.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is damaged where it was once durable.
    #[error(
        "WAL segment {path} is damaged at offset {offset}: {what}. The records after it \
         were durable, so this is not a torn write: the log cannot be trusted. Move this \
         server's data_dir aside and start it empty to receive the state from the leader"
    )]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// Reads every record of the segment at `path`. In the last segment (`last`), a damaged
/// record followed by no intact one is a torn write: the scan stops before it and reports
/// it through `end < len`. Anywhere else damage is [`ScanError::Corrupt`], naming the
/// segment and offset; so is a batch that does not continue the previous one.
pub fn scan(path: &Path, last: bool) -> Result<Scanned, ScanError> {
    let io_err = |source| ScanError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |offset: u64, what: String| ScanError::Corrupt {
        path: path.to_path_buf(),
        offset,
        what,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err)?;
    let len = bytes.len() as u64;
    if bytes.len() < HEADER as usize || &bytes[..8] != MAGIC {
        if last && bytes.len() < HEADER as usize && MAGIC.starts_with(&bytes[..bytes.len().min(8)])
        {
            // Created but its header never reached the disk: an empty last segment.
            let first = parse_name(path).unwrap_or(0);
            return Ok(Scanned {
                first,
                records: Vec::new(),
                end: 0,
                len,
                torn: false,
            });
        }
        return Err(corrupt(0, "no WAL segment header".into()));
    }
    let mut first_bytes = [0u8; 8];
    first_bytes.copy_from_slice(&bytes[8..16]);
    let first = u64::from_le_bytes(first_bytes);
    if parse_name(path) != Some(first) {
        return Err(corrupt(
            8,
            format!("the header says the first entry is {first}, the name does not"),
        ));
    }
    let mut records: Vec<Found> = Vec::new();
    let mut at = HEADER;
    let mut torn = false;
    while at < len {
        if bytes[at as usize..].iter().all(|b| *b == 0) {
            break; // the zero-filled rest of the segment
        }
        let Some(head) = intact_at(&bytes, at as usize) else {
            // Torn if nothing intact of a later batch follows (records are 8-aligned).
            let later = (at as usize + 8..bytes.len())
                .step_by(8)
                .find(|&p| intact_at(&bytes, p).is_some_and(|h| h.batch > at));
            match later {
                None if last => {
                    torn = true;
                    break;
                }
                None => {
                    return Err(corrupt(
                        at,
                        "a damaged record at the end of a sealed segment".into(),
                    ));
                }
                Some(p) => {
                    return Err(corrupt(
                        at,
                        format!(
                            "a damaged record, followed by an intact record of a later batch \
                             at offset {p}"
                        ),
                    ));
                }
            }
        };
        let start = (at + RECORD_HEADER) as usize;
        let payload = &bytes[start..start + head.len as usize];
        let entry: LogEntry = crate::codec::from_cbor(payload, "WAL record")
            .map_err(|e| corrupt(at, format!("an intact record that does not decode: {e}")))?;
        let expected = records.last().map_or(first, |r| r.entry.log_id.index + 1);
        if entry.log_id.index != expected {
            return Err(corrupt(
                at,
                format!("entry {} where {expected} was expected", entry.log_id.index),
            ));
        }
        records.push(Found { offset: at, entry });
        at += record_size(head.len);
    }
    Ok(Scanned {
        first,
        records,
        end: at.min(len),
        len,
        torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_not_segments() {
        assert_eq!(parse_name(Path::new(&file_name(42))), Some(42));
        assert_eq!(parse_name(Path::new("meta")), None);
        assert_eq!(parse_name(Path::new("42.wal")), None);
    }

    #[test]
    fn a_record_is_aligned_and_checked() {
        let mut r = Vec::new();
        push_record(&mut r, b"hello", 16);
        assert_eq!(r.len() % 8, 0);
        assert_eq!(intact_at(&r, 0).map(|h| h.batch), Some(16));
        let mut bad = r.clone();
        bad[RECORD_HEADER as usize + 1] ^= 1;
        assert!(intact_at(&bad, 0).is_none(), "payload flip");
        let mut bad = r;
        bad[0] ^= 1;
        assert!(intact_at(&bad, 0).is_none(), "length flip");
    }
}
