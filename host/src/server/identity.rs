//! This server's node id: made once at the first start of a data dir and kept in
//! `data_dir/node-id` (written durably), or random for a dev server. Never 0 (the
//! step-down in `election` votes for id 0 because no server has it).

use std::path::Path;

use super::StartError;
use crate::raft::log_store::OpenMode;

/// A fresh random node id (never 0).
pub(super) fn random_node_id() -> Result<u64, String> {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).map_err(|e| format!("no randomness for a node id: {e}"))?;
    Ok(u64::from_le_bytes(buf).max(1))
}

/// Reads this data dir's node id, or makes one (first start). Returns the id and whether
/// the raft log must already exist.
pub(super) fn node_identity(data_dir: &Path) -> Result<(u64, OpenMode), StartError> {
    let err = |path: &Path, reason: String| StartError::DataDir {
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| err(data_dir, e.to_string()))?;
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().parse::<u64>().map_err(|_| {
                err(
                    &path,
                    format!("{:?} is not a node id (a decimal u64)", text.trim()),
                )
            })?;
            Ok((id, OpenMode::Existing))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = random_node_id().map_err(|reason| err(&path, reason))?;
            Ok((id, OpenMode::Create))
        }
        Err(e) => Err(err(&path, e.to_string())),
    }
}

/// Writes the node-id file durably (temporary name, fsync, rename).
pub(super) fn write_node_id(data_dir: &Path, id: u64) -> Result<(), StartError> {
    let path = data_dir.join("node-id");
    let tmp = data_dir.join("node-id.tmp");
    let err = |e: std::io::Error| StartError::DataDir {
        path: path.clone(),
        reason: e.to_string(),
    };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        writeln!(f, "{id}").map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}
