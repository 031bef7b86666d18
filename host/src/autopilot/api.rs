//! The autopilot documents of the HTTP API, in Consul's field names and formats:
//! `GET /v1/operator/autopilot/health` (`OperatorHealthReply`) and
//! `GET /v1/operator/autopilot/state` (`AutopilotState`).
//!
//! Ids are the 16-hex-digit raft ids `operator raft list-peers` shows; durations are Go's
//! text; times are RFC 3339 in UTC (`StableSince` rounded to the second in the health
//! document, as Consul rounds it).

use serde_json::{Map, Value, json};
use std::time::Duration;

use super::{ServerState, State};
use crate::duration;

/// A raft id as the API shows it.
pub fn id_text(id: u64) -> String {
    format!("{id:016x}")
}

fn rfc3339(ms: u64, whole_seconds: bool) -> String {
    let t = if whole_seconds {
        Duration::from_secs((ms + 500) / 1000)
    } else {
        Duration::from_millis(ms)
    };
    let text = crate::logging::timestamp(t);
    if whole_seconds {
        text.replace(".000Z", "Z")
    } else {
        text
    }
}

fn health_server(s: &ServerState, leader: u64) -> Value {
    let o = &s.seen;
    json!({
        "ID": id_text(o.id),
        "Name": o.name,
        "Address": o.address,
        "SerfStatus": o.node_status.as_str(),
        "Version": o.version,
        "Leader": o.id == leader,
        "LastContact": duration::format(o.last_contact),
        "LastTerm": o.last_term,
        "LastIndex": o.last_index,
        "Healthy": s.healthy,
        "Voter": o.status.is_voter(),
        "StableSince": rfc3339(s.stable_since_ms, true),
    })
}

/// `GET /v1/operator/autopilot/health`'s body (served with 200 when healthy, else 429).
pub fn health(state: &State) -> Value {
    json!({
        "Healthy": state.healthy,
        "FailureTolerance": state.failure_tolerance,
        "Servers": state.servers.iter().map(|s| health_server(s, state.leader)).collect::<Vec<_>>(),
    })
}

/// `GET /v1/operator/autopilot/state`'s body.
pub fn state(state: &State) -> Value {
    let mut servers = Map::new();
    for s in &state.servers {
        let o = &s.seen;
        servers.insert(
            id_text(o.id),
            json!({
                "ID": id_text(o.id),
                "Name": o.name,
                "Address": o.address,
                "NodeStatus": o.node_status.as_str(),
                "Version": o.version,
                "LastContact": duration::format(o.last_contact),
                "LastTerm": o.last_term,
                "LastIndex": o.last_index,
                "Healthy": s.healthy,
                "StableSince": rfc3339(s.stable_since_ms, false),
                "ReadReplica": false,
                "Status": o.status.as_str(),
                "Meta": {},
                "NodeType": "voter",
            }),
        );
    }
    json!({
        "Healthy": state.healthy,
        "FailureTolerance": state.failure_tolerance,
        "Servers": servers,
        "Leader": id_text(state.leader),
        "Voters": state.voters().into_iter().map(id_text).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autopilot::tests::{cluster, judge};

    #[test]
    fn documents_use_consuls_names() {
        let s = judge(cluster(2, 1), None, 1_488_838_392_600);
        let h = health(&s);
        assert_eq!(h["Healthy"], true);
        assert_eq!(h["FailureTolerance"], 0);
        let first = &h["Servers"][0];
        assert_eq!(first["ID"], "0000000000000001");
        assert_eq!(first["Leader"], true);
        assert_eq!(first["SerfStatus"], "alive");
        assert_eq!(first["LastContact"], "20ms");
        assert_eq!(first["StableSince"], "2017-03-06T22:13:13Z");
        assert_eq!(h["Servers"][2]["Voter"], false);
        let st = state(&s);
        assert_eq!(st["Leader"], "0000000000000001");
        assert_eq!(
            st["Voters"],
            json!(["0000000000000001", "0000000000000002"])
        );
        let third = &st["Servers"]["0000000000000003"];
        assert_eq!(third["Status"], "non-voter");
        assert_eq!(third["NodeStatus"], "alive");
        assert_eq!(third["StableSince"], "2017-03-06T22:13:12.600Z");
    }
}
