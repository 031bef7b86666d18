//! The whole-system tests that run the host in-process, with no server processes: the
//! plugin runtime, the state machine and the snapshot files, through real wasm components.
//! One test binary; `tests/cluster/` is the other.

mod fsm;
mod plugin_runtime;
mod snapshot_files;
