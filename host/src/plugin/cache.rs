//! The on-disk cache of compiled components, so a restart does not recompile.
//!
//! A file is named by the SHA-256 of the component and a hash of the engine's configuration
//! and version (`Engine::precompile_compatibility_hash`), so a changed engine never loads a
//! stale artifact (CosmWasm learned this the hard way: gas costs compiled into artifacts).
//! A file holds the serialized artifact followed by its own SHA-256, checked before the
//! artifact is handed to wasmtime: a torn or bit-flipped file is recompiled, never run.
//! Files are written under a unique temporary name, fsynced and renamed, so a crash or two
//! servers sharing the directory never leave or read a partial file.
//!
//! The cache is an optimization: failing to write it is logged, not fatal.

use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// A directory of compiled artifacts.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: u64,
}

/// Distinguishes temporary files written by one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ArtifactCache {
    pub(crate) fn new(dir: &Path, engine: &Engine) -> Result<Self, LoadError> {
        std::fs::create_dir_all(dir).map_err(|e| LoadError::Cache {
            path: dir.display().to_string(),
            reason: format!("cannot create the directory: {e}"),
        })?;
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: h.finish(),
        })
    }

    fn path(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{:016x}.cwasm",
            hex::encode(hash),
            self.engine_key
        ))
    }

    /// The cached artifact for `hash`, if there is an intact, usable one.
    pub(crate) fn get(&self, engine: &Engine, hash: &[u8; 32]) -> Option<Component> {
        let path = self.path(hash);
        // Read into memory rather than mmap the file: a file replaced or truncated under a
        // running server must not fault the code mapped from it.
        let bytes = std::fs::read(&path).ok()?;
        let Some((artifact, sum)) = bytes.split_last_chunk::<32>() else {
            tracing::warn!(path = %path.display(), "plugin artifact truncated; recompiling");
            return None;
        };
        if Sha256::digest(artifact).as_slice() != sum {
            tracing::warn!(path = %path.display(), "plugin artifact checksum mismatch; recompiling");
            return None;
        }
        // SAFETY: the bytes are exactly what `put` wrote from `Component::serialize` of the
        // component whose hash names the file (the checksum above proves they are intact),
        // for an engine with the same compatibility hash; wasmtime still checks the header.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "plugin artifact unusable; recompiling");
                None
            }
        }
    }

    /// Stores the compiled `component` under `hash`; a failure is logged and ignored.
    pub(crate) fn put(&self, hash: &[u8; 32], component: &Component) {
        let path = self.path(hash);
        if let Err(reason) = self.write(&path, component) {
            tracing::warn!(path = %path.display(), %reason, "could not cache the compiled plugin");
        }
    }

    fn write(&self, path: &Path, component: &Component) -> Result<(), String> {
        let mut bytes = component
            .serialize()
            .map_err(|e| format!("serializing: {e}"))?;
        let sum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum);
        let tmp = path.with_extension(format!(
            "{}.{}.tmp",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("writing: {e}"));
        }
        Ok(())
    }
}
