//! Loading a component: compiled (or taken from the artifact cache), its imports checked
//! against the contract, described, and its description validated, before anything of it
//! runs in a transaction.
//!
//! Owns: [`LoadedPlugin`] (a validated plugin and what it declared) and the load path;
//! running its exports is in `call`.

use sha2::{Digest, Sha256};
use std::sync::Arc;
use wasmtime::Engine;

use super::call::{CallGate, Warm};
use super::host::{Access, HostState};
use super::{Limits, LoadError, PluginSet, Runtime, bindings, bundled, routes, validate};

/// A plugin's description, as it declared it at load, and a migration it declares: the
/// SDK's types (one definition for both sides of the contract). The tables' owner is the
/// plugin; [`crate::state::Schema`] records it.
pub use fsmhost_guest::{Description, Migration};

impl Runtime {
    /// Compiles (or fetches from the cache) and validates one component. `origin` names it
    /// in errors until its description is known (a file path or a bundled name).
    pub fn load(&self, origin: &str, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        let (component, compiled) = self.compile(origin, bytes, &hash)?;
        let ty = component.component_type();
        let mut imports = Vec::new();
        for (name, _) in ty.imports(&self.engine) {
            validate::import(origin, name)?;
            imports.push(name.to_string());
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::PluginPre::new)
            .map_err(|e| LoadError::Describe {
                plugin: origin.to_string(),
                reason: format!("the component does not implement the fsmhost:plugin world: {e:#}"),
            })?;
        let mut plugin = LoadedPlugin {
            origin: origin.to_string(),
            gate: self.gate.clone(),
            description: Description {
                name: origin.to_string(),
                version: String::new(),
                edition: String::new(),
                tables: Vec::new(),
                commands: Vec::new(),
                queries: Vec::new(),
                routes: Vec::new(),
                migrations: Vec::new(),
                reads: Vec::new(),
                sends: Vec::new(),
            },
            declared: Default::default(),
            hash,
            component: Arc::from(bytes),
            imports,
            warm: std::sync::Mutex::new(Vec::new()),
            compiled,
            pre: Arc::new(pre),
            engine: self.engine.clone(),
            limits: self.limits,
            commands: Vec::new(),
        };
        let d = plugin
            .call("describe", Access::None, |g, s| g.call_describe(s))
            .map_err(|e| LoadError::Describe {
                plugin: origin.to_string(),
                reason: e.to_string(),
            })?;
        plugin.description = Description::from(d);
        validate::description(origin, &plugin.description)?;
        plugin.declared = super::host::Declared::of(&plugin.description);
        routes::check(&plugin.description.name, &plugin.description.routes)?;
        plugin.commands = (plugin.description.commands.iter())
            .map(|c| Command {
                call: format!("command {c}"),
                metrics: std::sync::OnceLock::new(),
            })
            .collect();
        Ok(plugin)
    }

    /// Loads the bundled plugins as a set.
    pub fn load_bundled(&self) -> Result<PluginSet, LoadError> {
        let plugins = bundled()
            .iter()
            .map(|(name, bytes)| self.load(&format!("bundled:{name}"), bytes))
            .collect::<Result<Vec<_>, _>>()?;
        PluginSet::new(plugins)
    }
}

/// A validated plugin, ready to run.
pub struct LoadedPlugin {
    /// Where it was loaded from (a file, `bundled:<name>`), for messages.
    pub(super) origin: String,
    pub(super) gate: CallGate,
    pub(super) description: Description,
    pub(super) hash: [u8; 32],
    /// The component's bytes: an installed plugin travels in raft snapshots.
    pub(super) component: Arc<[u8]>,
    pub(super) imports: Vec<String>,
    pub(super) warm: std::sync::Mutex<Vec<Warm>>,
    pub(super) compiled: bool,
    pub(super) pre: Arc<bindings::PluginPre<HostState>>,
    pub(super) engine: Engine,
    pub(super) limits: Limits,
    /// The other plugins' tables and commands its description names.
    pub(super) declared: Arc<super::host::Declared>,
    /// Per command of the description, in its order.
    pub(super) commands: Vec<Command>,
}

/// What `apply` needs of one command, prepared once: its call name for messages, and its
/// metrics, looked up at its first apply.
pub(super) struct Command {
    pub(super) call: String,
    pub(super) metrics: std::sync::OnceLock<crate::metrics::CommandMetrics>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.description.name)
            .field("version", &self.description.version)
            .field("hash", &self.hash_hex())
            .finish()
    }
}

impl LoadedPlugin {
    /// What the plugin declared.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// SHA-256 of the component bytes: the plugin's identity.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The component's bytes.
    pub fn component(&self) -> &Arc<[u8]> {
        &self.component
    }

    /// The hash as hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// The interfaces the component imports (all within the contract, or it would not have
    /// loaded).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Whether loading compiled the component (false: it came from the artifact cache).
    pub fn was_compiled(&self) -> bool {
        self.compiled
    }
}
