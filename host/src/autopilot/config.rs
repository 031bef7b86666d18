//! The autopilot configuration (Consul's `AutopilotConfig`): its defaults, the stored form
//! the log replicates, compare-and-set, and its JSON in the HTTP API.
//!
//! Invariant: the configuration in force is the one the log last stored, so every leader
//! uses the same; a server's `[autopilot]` settings only seed it, once, when a leader finds
//! none stored.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

use crate::duration;

/// What autopilot does and how it judges servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    /// Remove failed servers from the raft configuration (when the failure tolerance
    /// allows).
    pub cleanup_dead_servers: bool,
    /// A server that last heard from the leader longer ago than this is unhealthy.
    pub last_contact_threshold: Duration,
    /// A server more than this many log entries behind the leader is unhealthy.
    pub max_trailing_logs: u64,
    /// Cleanup never leaves fewer voters than this (0: no minimum).
    pub min_quorum: u32,
    /// How long a non-voter must have been healthy before it is promoted to voter.
    pub server_stabilization_time: Duration,
}

impl Default for AutopilotConfig {
    /// Consul's defaults (`agent/config/default.go`).
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Duration::from_secs(10),
        }
    }
}

/// The configuration as the log stored it, with the raft indexes of its first and its
/// latest write (Consul's `CreateIndex` and `ModifyIndex`; `?cas=` compares the latter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConfig {
    /// The configuration.
    pub config: AutopilotConfig,
    /// Raft index of the first write.
    pub create_index: u64,
    /// Raft index of the latest write.
    pub modify_index: u64,
}

/// A write of the configuration: what a log entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUpdate {
    /// The new configuration.
    pub config: AutopilotConfig,
    /// Compare-and-set: write only if the stored configuration's `modify_index` is this
    /// (0: only if none is stored). `None` writes unconditionally.
    pub cas: Option<u64>,
}

impl ConfigUpdate {
    /// The stored configuration after applying this update at raft index `index` to
    /// `current`, or `None` when the compare-and-set fails (nothing changes).
    pub fn apply(&self, current: Option<&StoredConfig>, index: u64) -> Option<StoredConfig> {
        if let Some(cas) = self.cas
            && cas != current.map_or(0, |c| c.modify_index)
        {
            return None;
        }
        Some(StoredConfig {
            config: self.config.clone(),
            create_index: current.map_or(index, |c| c.create_index),
            modify_index: index,
        })
    }
}

/// The configuration in the API's JSON (Consul's `AutopilotConfiguration`; durations as
/// Go prints them; the Enterprise-only fields at their empty values).
pub fn to_json(config: &AutopilotConfig, create_index: u64, modify_index: u64) -> Value {
    json!({
        "CleanupDeadServers": config.cleanup_dead_servers,
        "LastContactThreshold": duration::format(config.last_contact_threshold),
        "MaxTrailingLogs": config.max_trailing_logs,
        "MinQuorum": config.min_quorum,
        "ServerStabilizationTime": duration::format(config.server_stabilization_time),
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": false,
        "UpgradeVersionTag": "",
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    })
}

/// Reads a `PUT /v1/operator/autopilot/configuration` body. As in Consul, a field left out
/// takes its default, names match without regard to case, and durations are Go duration
/// text or a number of nanoseconds. Unlike Consul, an unknown field is refused (a typo
/// would otherwise silently reset that setting to its default), and so is a non-empty
/// Enterprise-only field (redundancy zones and upgrade migrations do not exist here).
pub fn from_json(body: &[u8]) -> Result<AutopilotConfig, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object".to_string());
    };
    let mut config = AutopilotConfig::default();
    for (name, v) in &fields {
        let wrong = |what: &str| format!("{name}: {v} is not {what}");
        let key = name.to_ascii_lowercase();
        // Go's client sends `null` for an unset pointer (`LastContactThreshold`, a
        // `*ReadableDuration`): the field is left as if it were not there.
        if v.is_null() && FIELDS.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "cleanupdeadservers" => {
                config.cleanup_dead_servers = v.as_bool().ok_or_else(|| wrong("true or false"))?
            }
            "lastcontactthreshold" => {
                config.last_contact_threshold =
                    json_duration(v).ok_or_else(|| wrong("a duration such as \"200ms\""))?
            }
            "maxtrailinglogs" => {
                config.max_trailing_logs =
                    v.as_u64().ok_or_else(|| wrong("a count of log entries"))?
            }
            "minquorum" => {
                config.min_quorum = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| wrong("a number of servers"))?
            }
            "serverstabilizationtime" => {
                config.server_stabilization_time =
                    json_duration(v).ok_or_else(|| wrong("a duration such as \"10s\""))?
            }
            "redundancyzonetag" | "upgradeversiontag" | "disableupgrademigration" => {
                if !matches!(v, Value::Null | Value::Bool(false)) && v.as_str() != Some("") {
                    return Err(format!(
                        "{name} is a Consul Enterprise feature (redundancy zones, upgrade \
                         migrations) that fsmhost does not have; leave it out"
                    ));
                }
            }
            // What GET returned; a client may send it back unchanged.
            "createindex" | "modifyindex" => {}
            _ => {
                return Err(format!(
                    "unknown field {name:?}: the fields are CleanupDeadServers, \
                     LastContactThreshold, MaxTrailingLogs, MinQuorum, ServerStabilizationTime"
                ));
            }
        }
    }
    Ok(config)
}

/// Every field the body may carry, lower-cased.
const FIELDS: [&str; 10] = [
    "cleanupdeadservers",
    "lastcontactthreshold",
    "maxtrailinglogs",
    "minquorum",
    "serverstabilizationtime",
    "redundancyzonetag",
    "upgradeversiontag",
    "disableupgrademigration",
    "createindex",
    "modifyindex",
];

fn json_duration(v: &Value) -> Option<Duration> {
    match v {
        Value::String(s) => duration::parse(s),
        Value::Number(n) => n.as_u64().map(Duration::from_nanos),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_defaults_fill_what_is_left_out() {
        let c = AutopilotConfig {
            cleanup_dead_servers: false,
            last_contact_threshold: Duration::from_millis(350),
            max_trailing_logs: 10,
            min_quorum: 3,
            server_stabilization_time: Duration::from_secs(90),
        };
        let v = to_json(&c, 4, 9);
        assert_eq!(v["LastContactThreshold"], "350ms");
        assert_eq!(v["ServerStabilizationTime"], "1m30s");
        assert_eq!(v["ModifyIndex"], 9);
        assert_eq!(from_json(v.to_string().as_bytes()).unwrap(), c);
        let partial =
            from_json(br#"{"cleanupdeadservers": false, "LastContactThreshold": 5000000}"#)
                .unwrap();
        assert_eq!(
            partial,
            AutopilotConfig {
                cleanup_dead_servers: false,
                last_contact_threshold: Duration::from_millis(5),
                ..AutopilotConfig::default()
            }
        );
    }

    #[test]
    fn go_clients_nulls_and_lower_case_keys_leave_defaults() {
        // What Consul's Go client (api.AutopilotConfiguration) sends with only
        // CleanupDeadServers and MaxTrailingLogs set.
        let go = br#"{"CleanupDeadServers":false,"LastContactThreshold":null,
            "MaxTrailingLogs":20,"MinQuorum":0,"ServerStabilizationTime":null,
            "RedundancyZoneTag":"","DisableUpgradeMigration":false,"UpgradeVersionTag":"",
            "CreateIndex":0,"ModifyIndex":0}"#;
        let want = AutopilotConfig {
            cleanup_dead_servers: false,
            max_trailing_logs: 20,
            ..AutopilotConfig::default()
        };
        assert_eq!(from_json(go).unwrap(), want);
        let lower = br#"{"cleanupdeadservers":false,"lastcontactthreshold":null,
            "maxtrailinglogs":20,"minquorum":null}"#;
        assert_eq!(from_json(lower).unwrap(), want);
        let e = from_json(br#"{"Typo": null}"#).unwrap_err();
        assert!(e.contains("unknown field \"Typo\""), "{e}");
    }

    #[test]
    fn bad_bodies_are_named() {
        for (body, says) in [
            (&b"[1]"[..], "JSON object"),
            (
                b"{\"MinQuorum\": -1}",
                "MinQuorum: -1 is not a number of servers",
            ),
            (b"{\"LastContactThreshold\": \"soon\"}", "is not a duration"),
            (
                b"{\"RedundancyZoneTag\": \"zone\"}",
                "Consul Enterprise feature",
            ),
            (
                b"{\"CleanupDeadServer\": true}",
                "unknown field \"CleanupDeadServer\"",
            ),
            (b"{", "EOF"),
        ] {
            let e = from_json(body).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn compare_and_set() {
        let update = |cas| ConfigUpdate {
            config: AutopilotConfig::default(),
            cas,
        };
        let first = update(Some(0)).apply(None, 5).unwrap();
        assert_eq!((first.create_index, first.modify_index), (5, 5));
        assert_eq!(
            update(Some(0)).apply(Some(&first), 7),
            None,
            "exists already"
        );
        assert_eq!(update(Some(4)).apply(Some(&first), 7), None, "stale index");
        let second = update(Some(5)).apply(Some(&first), 7).unwrap();
        assert_eq!((second.create_index, second.modify_index), (5, 7));
        assert_eq!(
            update(None).apply(Some(&second), 8).unwrap().modify_index,
            8
        );
    }
}
