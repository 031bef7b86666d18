//! Flatten-free mirrors the catalog's records and requests are deserialized from
//! (`#[serde(from = ...)]`), so JSON bodies decode as Consul decodes them.
//!
//! A struct with a `#[serde(flatten)]` field (the records' [`Meta`]) is deserialized by
//! serde as a plain map, without telling the deserializer its field names, so
//! [`fsmhost_guest::json`] cannot match py-consul's lower-case keys to it. Each mirror
//! has the same serde names with the partition and namespace as plain fields; serializing
//! (the stored CBOR, the JSON answers) still uses the records' own derive, so stored bytes
//! are unchanged. Fields a request may leave out are `default` here: an empty required
//! field is refused by the command with Consul's message (`Must provide node`).

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::{Check, DeregisterRequest, Meta, RegisterRequest, Service, Weights};

/// [`Service`]'s fields.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceIn {
    #[serde(default)]
    node: String,
    #[serde(default)]
    kind: String,
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    weights: Option<Weights>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    partition: String,
    #[serde(default)]
    namespace: String,
}

impl From<ServiceIn> for Service {
    fn from(s: ServiceIn) -> Self {
        Service {
            node: s.node,
            kind: s.kind,
            id: s.id,
            service: s.service,
            tags: s.tags,
            address: s.address,
            meta: s.meta,
            port: s.port,
            weights: s.weights,
            create_index: s.create_index,
            modify_index: s.modify_index,
            tenancy: Meta {
                partition: s.partition,
                namespace: s.namespace,
            },
        }
    }
}

/// [`Check`]'s fields.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckIn {
    #[serde(default)]
    node: String,
    #[serde(rename = "CheckID", default)]
    check_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    output: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    service_tags: Vec<String>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    partition: String,
    #[serde(default)]
    namespace: String,
}

impl From<CheckIn> for Check {
    fn from(c: CheckIn) -> Self {
        Check {
            node: c.node,
            check_id: c.check_id,
            name: c.name,
            status: c.status,
            notes: c.notes,
            output: c.output,
            service_id: c.service_id,
            service_name: c.service_name,
            service_tags: c.service_tags,
            create_index: c.create_index,
            modify_index: c.modify_index,
            tenancy: Meta {
                partition: c.partition,
                namespace: c.namespace,
            },
        }
    }
}

/// [`RegisterRequest`]'s fields.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RegisterIn {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    tagged_addresses: BTreeMap<String, String>,
    #[serde(default)]
    node_meta: BTreeMap<String, String>,
    #[serde(default)]
    service: Option<Service>,
    #[serde(default)]
    check: Option<Check>,
    #[serde(default)]
    checks: Vec<Check>,
    #[serde(default)]
    skip_node_update: bool,
    #[serde(default)]
    partition: String,
    #[serde(default)]
    namespace: String,
}

impl From<RegisterIn> for RegisterRequest {
    fn from(r: RegisterIn) -> Self {
        RegisterRequest {
            id: r.id,
            node: r.node,
            address: r.address,
            datacenter: r.datacenter,
            tagged_addresses: r.tagged_addresses,
            node_meta: r.node_meta,
            service: r.service,
            check: r.check,
            checks: r.checks,
            skip_node_update: r.skip_node_update,
            tenancy: Meta {
                partition: r.partition,
                namespace: r.namespace,
            },
        }
    }
}

/// [`DeregisterRequest`]'s fields.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeregisterIn {
    #[serde(default)]
    node: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(rename = "CheckID", default)]
    check_id: String,
    #[serde(default)]
    partition: String,
    #[serde(default)]
    namespace: String,
}

impl From<DeregisterIn> for DeregisterRequest {
    fn from(r: DeregisterIn) -> Self {
        DeregisterRequest {
            node: r.node,
            service_id: r.service_id,
            check_id: r.check_id,
            tenancy: Meta {
                partition: r.partition,
                namespace: r.namespace,
            },
        }
    }
}
