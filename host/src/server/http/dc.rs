//! The datacenter (`datacenter` in the configuration): `GET /v1/catalog/datacenters`,
//! and `?dc=` on every endpoint. A cluster is one datacenter and knows no other, so
//! `?dc=` naming this one is accepted and any other gets Consul's answer when it has no
//! route to a datacenter (`structs.ErrNoDCPath`, a 500 from Consul's HTTP layer).

use hyper::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;

use crate::server::Node;
use crate::server::web::{self, Refusal, Reply};

/// Consul's error when a request names a datacenter it cannot reach.
pub const NO_PATH: &str = "No path to datacenter";

/// Refuses a request whose `?dc=` names another datacenter than `datacenter` (without
/// regard to case, as the configuration lower-cases it); an empty `?dc=` means this one.
pub fn check(datacenter: &str, query: &BTreeMap<String, String>) -> Result<(), Refusal> {
    match query.get("dc") {
        Some(dc) if !dc.is_empty() && !dc.eq_ignore_ascii_case(datacenter) => {
            Err(Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, NO_PATH))
        }
        _ => Ok(()),
    }
}

/// `GET /v1/catalog/datacenters`: the datacenters this cluster knows, nearest first: only
/// its own.
pub fn datacenters(node: &Node) -> Reply {
    web::json(StatusCode::OK, &json!([node.config.datacenter]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_this_datacenter_is_served() {
        assert!(check("dc1", &q(&[])).is_ok());
        assert!(check("dc1", &q(&[("dc", "")])).is_ok());
        assert!(check("dc1", &q(&[("dc", "dc1")])).is_ok());
        assert!(check("dc1", &q(&[("dc", "DC1")])).is_ok());
        let r = check("dc1", &q(&[("dc", "dc2")])).unwrap_err();
        assert_eq!(
            (r.status, r.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, NO_PATH)
        );
    }
}
