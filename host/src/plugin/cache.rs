//! The on-disk cache of compiled components, so a restart does not recompile.
//!
//! A file is named by the SHA-256 of the component and a hash of the engine's configuration
//! and version (`Engine::precompile_compatibility_hash`), so a changed engine never loads a
//! stale artifact (CosmWasm learned this the hard way: gas costs compiled into artifacts).
//! Files are written under a temporary name and renamed, so a crash leaves no partial file.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// A directory of compiled artifacts.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: u64,
}

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

    /// The cached artifact for `hash`, if there is a usable one.
    pub(crate) fn get(&self, engine: &Engine, hash: &[u8; 32]) -> Option<Component> {
        let path = self.path(hash);
        // Read into memory rather than mmap the file: a file replaced or truncated under a
        // running server must not fault the code mapped from it.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the file is in the server's own cache directory, written only by `put`
        // from `Component::serialize` of the component whose hash names it, for an engine
        // with the same compatibility hash. wasmtime still checks its header (version,
        // configuration) and fails cleanly on a mismatch or on foreign bytes.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "plugin artifact unusable; recompiling");
                None
            }
        }
    }

    /// Stores the compiled `component` under `hash`.
    pub(crate) fn put(&self, hash: &[u8; 32], component: &Component) -> Result<(), LoadError> {
        let path = self.path(hash);
        let err = |reason: String| LoadError::Cache {
            path: path.display().to_string(),
            reason,
        };
        let bytes = component
            .serialize()
            .map_err(|e| err(format!("serializing: {e}")))?;
        let tmp = path.with_extension("cwasm.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| err(format!("writing: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(format!("renaming: {e}")))
    }
}
