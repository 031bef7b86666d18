//! Catalog and health reads: each answers with the records and the index of the tables it
//! read, as Consul's blocking queries report it.

use fsmhost_guest::{Error, Index, KeyRange, Tenancy, Txn};
use std::collections::BTreeMap;

use crate::*;

fn max_index(tx: &dyn Txn, tables: &[&str]) -> Result<u64, Error> {
    let mut max = 0;
    for t in tables {
        max = max.max(tx.table_index(t)?);
    }
    Ok(max)
}

/// Every record of `index` in tenancy `t` (everything, in OSS), in the index's order.
fn all_in<T: serde::de::DeserializeOwned, A>(
    tx: &dyn Txn,
    index: &Index<T, A>,
    t: &Tenancy,
) -> Result<Vec<T>, Error> {
    index
        .iter_range(tx, KeyRange::Prefix(tenancy_key(t)))
        .collect()
}

pub(crate) fn nodes(tx: &dyn Txn, args: NodesArgs) -> Result<Indexed<Vec<Node>>, Error> {
    let part = args.tenancy.resolve()?.partition();
    let mut items: Vec<Node> = match args.node_meta.iter().next() {
        None => all_in(tx, &NODES_ID, &part)?,
        Some((k, v)) => NODES_META
            .iter(tx, &pair(part, k, v))
            .collect::<Result<_, _>>()?,
    };
    items.retain(|n| args.node_meta.iter().all(|(k, v)| n.meta.get(k) == Some(v)));
    items.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(Indexed {
        items,
        index: max_index(tx, &[NODES.name()])?,
    })
}

/// `services`: every service name in the namespace (the default one without arguments)
/// with the union of its instances' tags.
pub(crate) fn services(
    tx: &dyn Txn,
    args: Option<Meta>,
) -> Result<Indexed<BTreeMap<String, Vec<String>>>, Error> {
    let t = args.unwrap_or_default().resolve()?.tenancy();
    let mut items: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in all_in(tx, &SERVICES_SERVICE, &t)? {
        let tags = items.entry(s.service).or_default();
        for t in s.tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    for tags in items.values_mut() {
        tags.sort();
    }
    Ok(Indexed {
        items,
        index: max_index(tx, &[SERVICES.name()])?,
    })
}

fn instances(tx: &dyn Txn, args: &ServiceArgs) -> Result<Vec<ServiceNode>, Error> {
    require("service name", &args.service)?;
    let meta = args.tenancy.resolve()?;
    let mut out = Vec::new();
    for s in SERVICES_SERVICE.iter(tx, &named(meta.tenancy(), &args.service)) {
        let s = s?;
        if args
            .tag
            .as_ref()
            .is_some_and(|t| !s.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        {
            continue;
        }
        let node = NODES_ID
            .get(tx, &named(meta.partition(), &s.node))?
            .ok_or_else(|| {
                Error::internal(format!(
                    "service {:?} names missing node {:?}",
                    s.id, s.node
                ))
            })?;
        out.push(ServiceNode { node, service: s });
    }
    out.sort_by(|a, b| (&a.node.node, &a.service.id).cmp(&(&b.node.node, &b.service.id)));
    Ok(out)
}

pub(crate) fn service_nodes(
    tx: &dyn Txn,
    args: ServiceArgs,
) -> Result<Indexed<Vec<ServiceNode>>, Error> {
    Ok(Indexed {
        items: instances(tx, &args)?,
        index: max_index(tx, &[NODES.name(), SERVICES.name()])?,
    })
}

pub(crate) fn service_health(
    tx: &dyn Txn,
    args: ServiceArgs,
) -> Result<Indexed<Vec<ServiceHealth>>, Error> {
    let mut items = Vec::new();
    for sn in instances(tx, &args)? {
        let checks: Vec<Check> = CHECKS_NODE
            .iter(tx, &named(sn.node.tenancy.partition(), &sn.node.node))
            .filter(|c| {
                c.as_ref().map_or(true, |c| {
                    c.service_id.is_empty()
                        || (c.service_id == sn.service.id && c.tenancy == sn.service.tenancy)
                })
            })
            .collect::<Result<_, _>>()?;
        if args.passing && checks.iter().any(|c| c.status != "passing") {
            continue;
        }
        items.push(ServiceHealth {
            node: sn.node,
            service: sn.service,
            checks: sorted(checks),
        });
    }
    Ok(Indexed {
        items,
        index: max_index(tx, &[NODES.name(), SERVICES.name(), CHECKS.name()])?,
    })
}

pub(crate) fn node_services(
    tx: &dyn Txn,
    args: NodeArgs,
) -> Result<Indexed<Option<NodeServices>>, Error> {
    require("node", &args.node)?;
    let meta = args.tenancy.resolve()?;
    let items = match NODES_ID.get(tx, &named(meta.partition(), &args.node))? {
        None => None,
        Some(node) => {
            let mut services = BTreeMap::new();
            for s in SERVICES_NODE.iter(tx, &named(meta.partition(), &args.node)) {
                let s = s?;
                if s.tenancy == meta {
                    services.insert(s.id.clone(), s);
                }
            }
            Some(NodeServices { node, services })
        }
    };
    Ok(Indexed {
        items,
        index: max_index(tx, &[NODES.name(), SERVICES.name()])?,
    })
}

fn sorted(mut checks: Vec<Check>) -> Vec<Check> {
    checks.sort_by(|a, b| (&a.node, &a.check_id).cmp(&(&b.node, &b.check_id)));
    checks
}

pub(crate) fn node_checks(tx: &dyn Txn, args: NodeArgs) -> Result<Indexed<Vec<Check>>, Error> {
    require("node", &args.node)?;
    let meta = args.tenancy.resolve()?;
    let mut items = Vec::new();
    for c in CHECKS_NODE.iter(tx, &named(meta.partition(), &args.node)) {
        let c = c?;
        if c.tenancy == meta {
            items.push(c);
        }
    }
    Ok(Indexed {
        items: sorted(items),
        index: max_index(tx, &[CHECKS.name()])?,
    })
}

pub(crate) fn service_checks(
    tx: &dyn Txn,
    args: ServiceArgs,
) -> Result<Indexed<Vec<Check>>, Error> {
    require("service name", &args.service)?;
    let t = args.tenancy.resolve()?.tenancy();
    Ok(Indexed {
        items: sorted(
            CHECKS_SERVICE
                .iter(tx, &named(t, &args.service))
                .collect::<Result<_, _>>()?,
        ),
        index: max_index(tx, &[CHECKS.name()])?,
    })
}

pub(crate) fn checks_in_state(tx: &dyn Txn, args: StateArgs) -> Result<Indexed<Vec<Check>>, Error> {
    let t = args.tenancy.resolve()?.tenancy();
    let items = match args.state.as_str() {
        "any" => all_in(tx, &CHECKS_STATUS, &t)?,
        s if STATES.contains(&s) => CHECKS_STATUS
            .iter(tx, &named(t, &args.state))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(Error::bad_request(format!(
                "Invalid check state {other:?}: use passing, warning, critical or any"
            )));
        }
    };
    Ok(Indexed {
        items: sorted(items),
        index: max_index(tx, &[CHECKS.name()])?,
    })
}

/// `mesh-instances`: Consul's Connect reads (`/v1/catalog/connect/<service>`,
/// `/v1/health/connect/<service>`, `/v1/health/ingress/<service>`,
/// `/v1/catalog/gateway-services/<gateway>`). This catalog stores no proxy or gateway
/// configuration (`Proxy`, `Connect`, gateway config entries), so no instance is
/// Connect-capable and the answer is always empty; it carries the tables' index, so a
/// blocking read waits for catalog changes as Consul's would.
pub(crate) fn mesh_instances(
    tx: &dyn Txn,
    args: ServiceArgs,
) -> Result<Indexed<Vec<ServiceNode>>, Error> {
    require("service name", &args.service)?;
    args.tenancy.resolve()?;
    Ok(Indexed {
        items: Vec::new(),
        index: max_index(tx, &[NODES.name(), SERVICES.name(), CHECKS.name()])?,
    })
}

/// `usage`: the counts of `/v1/operator/usage` over every tenancy (Consul's
/// `ServiceUsage`): distinct services per namespace, instances, instances per Connect
/// kind, billable instances (typical kind, not `consul`), and nodes.
pub(crate) fn usage(tx: &dyn Txn, _: ()) -> Result<Indexed<Usage>, Error> {
    let mut u = Usage {
        connect_service_instances: CONNECT_KINDS.iter().map(|k| (k.to_string(), 0)).collect(),
        ..Usage::default()
    };
    let mut names = std::collections::BTreeSet::new();
    for s in SERVICES_ID.iter_range(tx, KeyRange::Prefix(Vec::new())) {
        let s = s?;
        u.service_instances += 1;
        if s.kind.is_empty() {
            if s.service != "consul" {
                u.billable_service_instances += 1;
            }
        } else if let Some(n) = u.connect_service_instances.get_mut(&s.kind) {
            *n += 1;
        }
        names.insert((s.tenancy.partition, s.tenancy.namespace, s.service));
    }
    u.services = names.len() as u64;
    for n in NODES_ID.iter_range(tx, KeyRange::Prefix(Vec::new())) {
        n?;
        u.nodes += 1;
    }
    Ok(Indexed {
        items: u,
        index: max_index(tx, &[NODES.name(), SERVICES.name()])?,
    })
}
