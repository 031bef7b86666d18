//! The whole-system tests that start real `fsmhost` server processes (the
//! `fsmhost_tests::cluster` harness) and run its CLI: one test binary, one module per
//! area; `tests/inprocess/` is the other. The helpers they share are in `support`.

mod acl;
mod autopilot;
mod catalog_api;
mod cluster;
mod disk;
mod editions;
mod http_api;
mod kv_api;
mod limits;
mod metrics;
mod migrations;
mod nemesis;
mod plugins_api;
mod raft_log;
mod raft_port;
mod reliability;
mod sessions;
mod snapshot_archives;
mod snapshots;
mod support;
mod tls;
mod upgrades;
mod wire_compat;
