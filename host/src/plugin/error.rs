//! Errors of loading a plugin and of calling one. Every message names the plugin and what
//! it was doing, and says what happened to the command.

/// Why a plugin was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a component this host can compile.
    #[error("plugin {plugin}: not a loadable WebAssembly component: {reason}")]
    Compile {
        /// Where the plugin came from (file or bundled name).
        plugin: String,
        /// The compiler's reason.
        reason: String,
    },
    /// The component imports something outside the `fsmhost:plugin` contract.
    #[error(
        "plugin {plugin} imports `{import}`, which is outside the fsmhost:plugin@{contract} \
         contract; build it for wasm32-unknown-unknown with fsmhost-guest (no WASI)"
    )]
    ForbiddenImport {
        /// Where the plugin came from.
        plugin: String,
        /// The refused import.
        import: String,
        /// The contract version this host serves.
        contract: &'static str,
    },
    /// Instantiating the component or calling `describe` failed.
    #[error("plugin {plugin}: describe failed: {reason}")]
    Describe {
        /// Where the plugin came from.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// `describe` returned something inconsistent.
    #[error("plugin {plugin}: invalid description: {problem}")]
    InvalidDescription {
        /// The plugin's name (or origin if the name itself is invalid).
        plugin: String,
        /// What is wrong, naming the table, index, command or query.
        problem: String,
    },
    /// Two plugins of one set clash.
    #[error("plugins {first} and {second} both declare {what}")]
    Conflict {
        /// The first plugin.
        first: String,
        /// The second plugin.
        second: String,
        /// What both declare, e.g. `table kvs`.
        what: String,
    },
    /// The compiled-artifact cache could not be read or written.
    #[error("plugin artifact cache {path}: {reason}")]
    Cache {
        /// The cache file or directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// The engine could not be configured.
    #[error("configuring the wasm engine: {0}")]
    Engine(String),
}

/// Why a call into a plugin failed. For `apply`, every case means the command left no write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call used up its fuel (`plugin_fuel`); deterministic on every server.
    #[error("plugin {plugin}: {call} ran out of fuel (limit {limit}); nothing was written")]
    FuelExhausted {
        /// Plugin name.
        plugin: String,
        /// e.g. `command set`.
        call: String,
        /// The fuel limit.
        limit: u64,
    },
    /// The plugin tried to grow its memory past `plugin_memory`.
    #[error(
        "plugin {plugin}: {call} exceeded its memory limit of {limit} bytes (asked for \
         {requested}); nothing was written"
    )]
    MemoryExhausted {
        /// Plugin name.
        plugin: String,
        /// e.g. `command set`.
        call: String,
        /// The limit in bytes.
        limit: usize,
        /// The size it asked for.
        requested: usize,
    },
    /// The plugin trapped (a panic is an `unreachable` trap).
    #[error("plugin {plugin}: {call} trapped: {trap}; nothing was written")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// e.g. `command set`.
        call: String,
        /// The trap.
        trap: String,
    },
    /// The plugin returned an error.
    #[error("plugin {plugin}: {call} failed: {message}")]
    Plugin {
        /// Plugin name.
        plugin: String,
        /// e.g. `command set`.
        call: String,
        /// The error's kind.
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
    },
    /// The call used up its host-work budget (state calls are charged in fuel units) or its
    /// budget of bytes written; deterministic on every server.
    #[error("plugin {plugin}: {call} used up its {budget}; nothing was written")]
    BudgetExceeded {
        /// Plugin name.
        plugin: String,
        /// e.g. `command set`.
        call: String,
        /// Which budget, with its limit.
        budget: String,
    },
    /// This server could not run the call (no free instance slot, or instantiation failed
    /// for a reason of this host's). Not a verdict on the command: it must not be recorded as
    /// the command's result, since another server would run it.
    #[error("plugin {plugin}: {call} could not run on this server: {reason}; try again")]
    Unavailable {
        /// Plugin name.
        plugin: String,
        /// e.g. `query get`.
        call: String,
        /// Why.
        reason: String,
    },
    /// The plugin has no such command.
    #[error("plugin {plugin} has no command {command}")]
    UnknownCommand {
        /// Plugin name.
        plugin: String,
        /// The command asked for.
        command: String,
    },
    /// A command's messages went too far (more than [`super::MAX_MESSAGES`], or more
    /// than [`super::MAX_MESSAGE_DEPTH`] deep); deterministic on every server.
    #[error("plugin {plugin}: {reason}; nothing was written")]
    Messages {
        /// The plugin whose command sent them.
        plugin: String,
        /// What went too far.
        reason: String,
    },
    /// The plugin has no such query.
    #[error("plugin {plugin} has no query {query}")]
    UnknownQuery {
        /// Plugin name.
        plugin: String,
        /// The query asked for.
        query: String,
    },
}

/// The kind of a plugin's own error: the SDK's own type, so the two sides of the contract
/// cannot disagree on it (`convert.rs` maps it to and from the WIT enum; the server maps
/// it to an HTTP status through `fsm::FailureKind`).
pub use fsmhost_guest::ErrorKind;
