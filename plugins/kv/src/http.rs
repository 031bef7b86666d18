//! Consul's KV HTTP API, served by this plugin: `GET`, `PUT`, `DELETE /v1/kv/<key>` and
//! `PUT /v1/txn` (`agent/kvs_endpoint.go`, `agent/txn_endpoint.go`).
//!
//! The routers turn a request into one of the plugin's commands or queries; the renderers
//! give Consul's answers: `DirEntry` JSON with base64 values, `true`/`false` bodies, a 404
//! with an empty body for a missing key, the raw value with `?raw`, and the Txn `Results`
//! and `Errors`. The host does the rest (the log, forwarding, `?index`/`?wait`, `?stale`/
//! `?consistent`, `X-Consul-Index`).
//!
//! Where Consul answers 500 for a client's mistake (a malformed `?flags`, `?cas`, or an
//! unknown session), this plugin answers 400 with the same message.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fsmhost_guest::acl::{self, Access, Need, Resource};
use fsmhost_guest::http::{Plan, Request, Response, context, json_body};
use fsmhost_guest::{Error, Tenancy, from_cbor};
use serde::{Deserialize, Serialize};

use crate::txn::{self, MAX_OPS, Op, TxnError, TxnRequest, Verb};
use crate::{
    ACQUIRE, CAS, CasRequest, DELETE, DELETE_CAS, DELETE_TREE, DeleteCasRequest, DeleteRequest,
    DeleteTreeRequest, EDITION, Entry, GET, GetArgs, KEYS, KeysArgs, KeysResult, LIST, ListArgs,
    ListResult, LockRequest, RELEASE, SET, SetRequest, TXN, TXN_READ,
};

/// The largest value (Consul's `kv_max_value_size`, 512 KiB).
pub const MAX_VALUE: usize = 512 * 1024;

/// The path prefix of the KV API.
pub const KV_PATH: &str = "/v1/kv/";

/// Consul's `DirEntry` in JSON, fields in Consul's order.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DirEntry {
    /// How many times the key was locked.
    pub lock_index: u64,
    /// The key.
    pub key: String,
    /// The flags.
    pub flags: u64,
    /// The value in base64; `null` when empty.
    pub value: Option<String>,
    /// The lock holder; omitted when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Index of the write that created the key.
    pub create_index: u64,
    /// Index of the last write that changed it.
    pub modify_index: u64,
    /// The namespace (enterprise edition; omitted in OSS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The partition (enterprise edition; omitted in OSS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

impl From<&Entry> for DirEntry {
    fn from(e: &Entry) -> Self {
        DirEntry {
            lock_index: e.lock_index,
            key: e.key.clone(),
            flags: e.flags,
            value: (!e.value.is_empty()).then(|| B64.encode(&e.value)),
            session: e.session.clone(),
            create_index: e.create_index,
            modify_index: e.modify_index,
            namespace: (!e.tenancy.namespace.is_empty()).then(|| e.tenancy.namespace.clone()),
            partition: (!e.tenancy.partition.is_empty()).then(|| e.tenancy.partition.clone()),
        }
    }
}

/// What a `GET /v1/kv/` answer looks like.
#[derive(Serialize, Deserialize)]
enum Read {
    /// One key: `[DirEntry]`, or its raw value.
    Entry { raw: bool },
    /// `?recurse`: every entry under the prefix.
    List,
    /// `?keys`: the keys under the prefix (in the request's tenancy, whose rules decide
    /// what the caller sees); an empty list is a 404 unless the prefix is "".
    Keys {
        prefix_empty: bool,
        #[serde(default)]
        tenancy: Tenancy,
    },
}

fn missing_key() -> Error {
    Error::bad_request("Missing key name")
}

/// Consul's answer when flags that exclude each other are given together, naming the
/// request's parameters but `dc` (which the host adds to every request it routes here).
fn conflicting(req: &Request) -> Error {
    let mut params: Vec<String> = req
        .query
        .iter()
        .filter(|(k, _)| k != "dc")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    params.sort();
    Error::bad_request(format!("Conflicting flags: {}", params.join("&")))
}

fn not_found() -> Response {
    Response::bytes(404, "text/plain; charset=utf-8", Vec::new())
}

/// `GET /v1/kv/<key>`: a key, `?recurse` a prefix, `?keys` (with `?separator`) key names.
pub fn route_get(req: &Request) -> Result<Plan, Error> {
    let key = req.path_after(KV_PATH).to_string();
    let tenancy = Tenancy::from_request(req, EDITION)?;
    if req.has("keys") {
        let separator = req
            .get("separator")
            .or_else(|| req.get("seperator"))
            .map(str::to_string);
        let prefix_empty = key.is_empty();
        let args = KeysArgs {
            prefix: key,
            separator,
            tenancy,
        };
        // Anyone may list; the renderer keeps the keys the caller may read (Consul).
        return Plan::query(&KEYS, &args)?.filtered().context(&Read::Keys {
            prefix_empty,
            tenancy: args.tenancy.clone(),
        });
    }
    if req.has("recurse") {
        let args = ListArgs {
            prefix: key,
            tenancy,
        };
        return Plan::query(&LIST, &args)?.filtered().context(&Read::List);
    }
    if key.is_empty() {
        return Err(missing_key());
    }
    let raw = req.has("raw");
    let need = Need::read(Resource::Key, &key).in_tenancy(&tenancy);
    Plan::query(&GET, &GetArgs { key, tenancy })?
        .need(need)
        .context(&Read::Entry { raw })
}

/// Whether the caller may read `key` (a list shows only those, as Consul's does).
fn readable(tenancy: &Tenancy, key: &str) -> bool {
    acl::allowed_in(tenancy, Resource::Key, key, Access::Read)
}

/// Renders a `GET /v1/kv/` answer.
pub fn render_get(ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    let rendered = context::<Read>(ctx).and_then(|read| {
        let bytes = outcome?;
        Ok(match read {
            Read::Entry { raw } => match from_cbor::<Option<Entry>>(&bytes, "get result")? {
                None => not_found(),
                Some(e) if raw => Response::bytes(200, "text/plain", e.value),
                Some(e) => Response::json(200, &[DirEntry::from(&e)]),
            },
            Read::List => {
                let list: ListResult = from_cbor(&bytes, "list result")?;
                let total = list.entries.len();
                let entries: Vec<DirEntry> = list
                    .entries
                    .iter()
                    .filter(|e| readable(&e.tenancy, &e.key))
                    .map(DirEntry::from)
                    .collect();
                let filtered = entries.len() < total;
                if entries.is_empty() {
                    not_found().filtered_by_acls(filtered)
                } else {
                    Response::json(200, &entries).filtered_by_acls(filtered)
                }
            }
            Read::Keys {
                prefix_empty,
                tenancy,
            } => {
                let keys: KeysResult = from_cbor(&bytes, "keys result")?;
                let total = keys.keys.len();
                let visible: Vec<&String> =
                    keys.keys.iter().filter(|k| readable(&tenancy, k)).collect();
                let filtered = visible.len() < total;
                if visible.is_empty() && !prefix_empty {
                    not_found().filtered_by_acls(filtered)
                } else {
                    Response::json(200, &visible).filtered_by_acls(filtered)
                }
            }
        })
    });
    rendered.unwrap_or_else(|e| Response::error(&e))
}

/// `PUT /v1/kv/<key>`: the body is the value; `?flags`, `?cas`, `?acquire=<session>`
/// (lock and write), `?release=<session>` (unlock and write).
pub fn route_put(req: &Request) -> Result<Plan, Error> {
    let key = req.path_after(KV_PATH).to_string();
    let tenancy = Tenancy::from_request(req, EDITION)?;
    if key.is_empty() {
        return Err(missing_key());
    }
    let given = ["cas", "acquire", "release"]
        .iter()
        .filter(|f| req.has(f))
        .count();
    if given > 1 {
        return Err(conflicting(req));
    }
    // `?acquire=` or `?release=` without a session: Consul's "missing session" (a 400 here).
    let lock = [("acquire", &ACQUIRE), ("release", &RELEASE)]
        .into_iter()
        .find_map(|(flag, command)| req.get(flag).map(|s| (s.to_string(), command)));
    if lock.as_ref().is_some_and(|(s, _)| s.is_empty()) {
        return Err(Error::bad_request("missing session"));
    }
    if req.body.len() > MAX_VALUE {
        return Ok(Plan::respond(Response::text(
            413,
            format!(
                "Request body({} bytes) too large, max size: {MAX_VALUE} bytes",
                req.body.len()
            ),
        )));
    }
    let flags = req.get_u64("flags")?.unwrap_or(0);
    let value = req.body.clone();
    let need = Need::write(Resource::Key, &key).in_tenancy(&tenancy);
    if let Some((session, command)) = lock {
        let lock = LockRequest {
            key,
            value,
            flags,
            session,
            tenancy,
        };
        return Ok(Plan::apply(command, &lock)?.need(need));
    }
    let plan = match req.get_u64("cas")? {
        Some(index) => Plan::apply(
            &CAS,
            &CasRequest {
                key,
                value,
                flags,
                index,
                tenancy,
            },
        ),
        None => Plan::apply(
            &SET,
            &SetRequest {
                key,
                value,
                flags,
                tenancy,
            },
        ),
    }?;
    Ok(plan.need(need))
}

/// `DELETE /v1/kv/<key>`: `?recurse` deletes a prefix, `?cas` only at that ModifyIndex.
pub fn route_delete(req: &Request) -> Result<Plan, Error> {
    let key = req.path_after(KV_PATH).to_string();
    let tenancy = Tenancy::from_request(req, EDITION)?;
    let cas = req.get_u64("cas")?;
    if req.has("recurse") {
        if cas.is_some() {
            return Err(conflicting(req));
        }
        let need = Need::write_prefix(Resource::Key, &key).in_tenancy(&tenancy);
        let req = DeleteTreeRequest {
            prefix: key,
            tenancy,
        };
        return Ok(Plan::apply(&DELETE_TREE, &req)?.need(need));
    }
    if key.is_empty() {
        return Err(missing_key());
    }
    let need = Need::write(Resource::Key, &key).in_tenancy(&tenancy);
    let plan = match cas {
        Some(index) => Plan::apply(
            &DELETE_CAS,
            &DeleteCasRequest {
                key,
                index,
                tenancy,
            },
        ),
        None => Plan::apply(&DELETE, &DeleteRequest { key, tenancy }),
    }?;
    Ok(plan.need(need))
}

/// Renders a write's `true` or `false`.
pub fn render_bool(_ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    match outcome.and_then(|b| from_cbor::<bool>(&b, "write result")) {
        Ok(ok) => Response::json(200, &ok),
        Err(e) => Response::error(&e),
    }
}

/// One element of a Txn request (`api.TxnOp`); only `KV` is served here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnOpJson {
    #[serde(rename = "KV")]
    kv: Option<KvOpJson>,
    #[serde(rename = "Node")]
    node: Option<serde_json::Value>,
    #[serde(rename = "Service")]
    service: Option<serde_json::Value>,
    #[serde(rename = "Check")]
    check: Option<serde_json::Value>,
}

/// A KV operation (`api.KVTxnOp`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct KvOpJson {
    verb: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    index: u64,
    #[serde(default)]
    session: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    partition: Option<String>,
}

/// One element of a Txn answer's `Results`.
#[derive(Serialize)]
struct TxnResultJson {
    #[serde(rename = "KV")]
    kv: DirEntry,
}

/// A Txn answer, fields in Consul's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResponseJson<'a> {
    results: Option<Vec<TxnResultJson>>,
    errors: Option<&'a [TxnError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
}

/// The context of a Txn answer.
#[derive(Serialize, Deserialize)]
struct TxnAnswer {
    read_only: bool,
}

fn txn_rolled_back(errors: &[TxnError]) -> Response {
    let body = TxnResponseJson {
        results: None,
        errors: Some(errors),
        index: None,
    };
    Response::json(409, &body)
}

/// Turns one JSON operation into an [`Op`], or the reason it cannot run.
fn txn_op(i: usize, op: TxnOpJson, base: &Tenancy) -> Result<Result<Op, String>, Response> {
    let other = [
        ("Node", op.node.is_some()),
        ("Service", op.service.is_some()),
        ("Check", op.check.is_some()),
    ];
    if let Some((what, _)) = other.iter().find(|(_, given)| *given) {
        return Err(Response::text(
            400,
            format!(
                "operation {i} is a {what} operation; /v1/txn here serves KV operations only \
                 (the kv plugin's)"
            ),
        ));
    }
    let Some(kv) = op.kv else {
        return Err(Response::text(
            400,
            format!("operation {i} has no KV member"),
        ));
    };
    let value = match kv.value.as_deref() {
        None => Vec::new(),
        Some(v) => B64.decode(v).map_err(|e| {
            Response::text(
                400,
                format!("Failed to parse body: operation {i}: Value: {e}"),
            )
        })?,
    };
    if value.len() > MAX_VALUE {
        return Err(Response::text(
            413,
            format!(
                "Value for key {:?} is too large ({} > {MAX_VALUE} bytes)",
                kv.key,
                value.len()
            ),
        ));
    }
    // An operation's own Namespace and Partition, else the request's `?ns=`/`?partition=`.
    let tenancy = Tenancy {
        partition: kv.partition.unwrap_or_else(|| base.partition.clone()),
        namespace: kv.namespace.unwrap_or_else(|| base.namespace.clone()),
    }
    .resolve(EDITION)
    .map_err(|e| Response::text(400, format!("operation {i}: {}", e.message)))?;
    let Some(verb) = Verb::parse(&kv.verb) else {
        return Ok(Err(format!("unknown KV verb {:?}", kv.verb)));
    };
    if kv.key.is_empty() && verb != Verb::DeleteTree {
        return Ok(Err("Must provide key".into()));
    }
    if kv.key.contains('\0') {
        return Ok(Err(format!("key {:?} contains a NUL byte", kv.key)));
    }
    Ok(Ok(Op {
        verb,
        key: kv.key,
        value,
        flags: kv.flags,
        index: kv.index,
        session: kv.session,
        tenancy,
    }))
}

/// `PUT /v1/txn`: up to 64 KV operations, all or nothing; reads only run as a query.
pub fn route_txn(req: &Request) -> Result<Plan, Error> {
    let base = Tenancy::from_request(req, EDITION)?;
    let parsed: Vec<TxnOpJson> = match json_body(req) {
        Ok(ops) => ops,
        Err(e) => {
            return Ok(Plan::respond(Response::text(
                400,
                format!("Failed to parse body: {e}"),
            )));
        }
    };
    if parsed.len() > MAX_OPS {
        return Ok(Plan::respond(Response::text(
            413,
            format!(
                "Transaction contains too many operations ({} > {MAX_OPS})",
                parsed.len()
            ),
        )));
    }
    let mut ops = Vec::with_capacity(parsed.len());
    let mut errors = Vec::new();
    let mut needs = Vec::new();
    for (i, op) in parsed.into_iter().enumerate() {
        match txn_op(i, op, &base) {
            Err(response) => return Ok(Plan::respond(response)),
            Ok(Ok(op)) => {
                // Consul checks each operation's key and reports a denial as that
                // operation's error; the host checks the same needs again.
                let need = op_need(&op);
                if !acl::allowed_in(&need.tenancy, need.resource, &need.segment, need.access) {
                    errors.push(TxnError {
                        op_index: i,
                        what: "Permission denied".into(),
                    });
                }
                needs.push(need);
                ops.push(op);
            }
            Ok(Err(what)) => errors.push(TxnError { op_index: i, what }),
        }
    }
    if !errors.is_empty() {
        return Ok(Plan::respond(txn_rolled_back(&errors)));
    }
    let read_only = ops.iter().all(|o| o.verb.is_read());
    let request = TxnRequest { ops };
    let mut plan = if read_only {
        Plan::query(&TXN_READ, &request)?
    } else {
        Plan::apply(&TXN, &request)?
    }
    .filtered();
    for need in needs {
        plan = plan.need(need);
    }
    plan.context(&TxnAnswer { read_only })
}

/// What the caller's token must allow for one operation: read for the checks and reads,
/// write for the writes, write on the whole prefix for `delete-tree` (Consul's
/// `kvsPreApply`).
fn op_need(op: &Op) -> Need {
    match op.verb {
        Verb::DeleteTree => Need::write_prefix(Resource::Key, &op.key),
        v if v.is_read() => Need::read(Resource::Key, &op.key),
        _ => Need::write(Resource::Key, &op.key),
    }
    .in_tenancy(&op.tenancy)
}

/// Renders a Txn answer: `{"Results": [{"KV": ...}], "Errors": null}`, or the failures
/// with 409. A read-only answer carries its `Index` too, as Consul's does.
pub fn render_txn(ctx: &[u8], outcome: Result<Vec<u8>, Error>, index: u64) -> Response {
    let read_only = context::<TxnAnswer>(ctx).is_ok_and(|c| c.read_only);
    let entries = match outcome.and_then(|b| from_cbor::<Vec<Entry>>(&b, "txn result")) {
        Ok(entries) => entries,
        Err(e) => {
            return match txn::failures(&e) {
                Some(errors) => txn_rolled_back(&errors),
                None => Response::error(&e),
            };
        }
    };
    // A get-tree's entries the caller may not read are left out, as Consul filters them.
    let results: Vec<TxnResultJson> = entries
        .iter()
        .filter(|e| readable(&e.tenancy, &e.key))
        .map(|e| TxnResultJson {
            kv: DirEntry::from(e),
        })
        .collect();
    let filtered = results.len() < entries.len();
    let body = TxnResponseJson {
        results: Some(results),
        errors: None,
        index: read_only.then_some(index),
    };
    Response::json(200, &body).filtered_by_acls(filtered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsmhost_guest::Harness;

    fn h() -> Harness {
        Harness::new(crate::plugin()).expect("kv schema is valid")
    }

    fn json(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("a JSON body")
    }

    /// A caller whose token reads and writes `app/` only (and nothing else).
    fn app_only(resource: Resource, segment: &str, _access: Access) -> bool {
        resource == Resource::Key && segment.starts_with("app/")
    }

    #[test]
    fn acls_guard_keys_and_filter_lists() {
        let mut h = h();
        put(&mut h, "app/a", "1");
        put(&mut h, "secret/b", "2");
        let denied = h.http_as(Request::new("GET", "/v1/kv/secret/b"), app_only);
        assert_eq!(
            denied.status,
            403,
            "{}",
            String::from_utf8_lossy(&denied.body)
        );
        let denied = h.http_as(Request::new("PUT", "/v1/kv/secret/c").body("x"), app_only);
        assert_eq!(denied.status, 403);
        let ok = h.http_as(Request::new("PUT", "/v1/kv/app/c").body("x"), app_only);
        assert_eq!((ok.status, ok.body.as_slice()), (200, b"true".as_slice()));
        // A list keeps what the caller may read and says it was filtered.
        let list = h.http_as(
            Request::new("GET", "/v1/kv/").param("recurse", ""),
            app_only,
        );
        let keys: Vec<String> = json(&list)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Key"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, ["app/a", "app/c"]);
        let header = list
            .headers
            .iter()
            .find(|(n, _)| n == "X-Consul-Results-Filtered-By-ACLs");
        assert_eq!(header.map(|(_, v)| v.as_str()), Some("true"));
        let keys = h.http_as(Request::new("GET", "/v1/kv/").param("keys", ""), app_only);
        assert_eq!(json(&keys), serde_json::json!(["app/a", "app/c"]));
        // Everything allowed: nothing filtered, no header.
        let all = h.http(Request::new("GET", "/v1/kv/").param("recurse", ""));
        assert!(all.headers.is_empty());
        // A recursive delete needs write on the whole prefix; a txn reports the denied op.
        let denied = h.http_as(
            Request::new("DELETE", "/v1/kv/").param("recurse", ""),
            app_only,
        );
        assert_eq!(denied.status, 403);
        let body = r#"[{"KV":{"Verb":"get","Key":"app/a"}},{"KV":{"Verb":"set","Key":"secret/z","Value":"eA=="}}]"#;
        let txn = h.http_as(Request::new("PUT", "/v1/txn").body(body), app_only);
        assert_eq!(txn.status, 409);
        assert_eq!(json(&txn)["Errors"][0]["OpIndex"], 1);
        assert_eq!(json(&txn)["Errors"][0]["What"], "Permission denied");
    }

    fn put(h: &mut Harness, key: &str, value: &str) -> Response {
        h.http(Request::new("PUT", &format!("/v1/kv/{key}")).body(value))
    }

    #[test]
    fn get_put_delete_in_consuls_shapes() {
        let mut h = h();
        let r = put(&mut h, "my-key", "test");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"true"[..]));
        let r = h.http(Request::new("GET", "/v1/kv/my-key"));
        let mut want = serde_json::json!({"LockIndex": 0, "Key": "my-key", "Flags": 0,
            "Value": "dGVzdA==", "CreateIndex": 1, "ModifyIndex": 1});
        if EDITION == fsmhost_guest::Edition::Enterprise {
            // Consul Enterprise names the entry's namespace and partition.
            want["Namespace"] = "default".into();
            want["Partition"] = "default".into();
        }
        assert_eq!(json(&r), serde_json::json!([want]));
        let r = h.http(Request::new("GET", "/v1/kv/my-key").param("raw", ""));
        assert_eq!(
            (r.content_type.as_str(), r.body.as_slice()),
            ("text/plain", &b"test"[..])
        );
        let r = h.http(Request::new("DELETE", "/v1/kv/my-key"));
        assert_eq!(r.body, b"true");
        let r = h.http(Request::new("GET", "/v1/kv/my-key"));
        assert_eq!((r.status, r.body.len()), (404, 0));
        let r = h.http(Request::new("GET", "/v1/kv/"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (400, &b"Missing key name"[..])
        );
    }

    #[test]
    fn cas_flags_and_conflicting_flags() {
        let mut h = h();
        let r = h.http(
            Request::new("PUT", "/v1/kv/k")
                .param("flags", "42")
                .body("v"),
        );
        assert_eq!(r.body, b"true");
        let r = h.http(Request::new("PUT", "/v1/kv/k").param("cas", "0").body("w"));
        assert_eq!(r.body, b"false", "cas=0 on an existing key");
        let r = h.http(Request::new("PUT", "/v1/kv/k").param("cas", "1").body("w"));
        assert_eq!(r.body, b"true");
        let r = h.http(Request::new("DELETE", "/v1/kv/k").param("cas", "0"));
        assert_eq!(r.body, b"false", "cas=0 never deletes");
        let r = h.http(
            Request::new("DELETE", "/v1/kv/k")
                .param("recurse", "")
                .param("cas", "2"),
        );
        assert_eq!(
            (r.status, String::from_utf8_lossy(&r.body).as_ref()),
            (400, "Conflicting flags: cas=2&recurse=")
        );
        let r = h.http(Request::new("PUT", "/v1/kv/k").param("flags", "x"));
        assert_eq!(r.status, 400);
        let big = vec![b'x'; MAX_VALUE + 1];
        let r = h.http(Request::new("PUT", "/v1/kv/big").body(big));
        assert_eq!(r.status, 413);
        assert_eq!(h.store().len("kvs"), 1, "refused writes wrote nothing");
    }

    #[test]
    fn keys_and_recurse_as_the_documentation_shows() {
        let mut h = h();
        for k in ["/web/bar", "/web/foo", "/web/subdir/x", "/web/subdir/y"] {
            put(&mut h, k, "v");
        }
        let r = h.http(
            Request::new("GET", "/v1/kv//web/")
                .param("keys", "")
                .param("separator", "/"),
        );
        assert_eq!(
            json(&r),
            serde_json::json!(["/web/bar", "/web/foo", "/web/subdir/"])
        );
        let r = h.http(Request::new("GET", "/v1/kv//web/subdir/").param("recurse", ""));
        assert_eq!(json(&r).as_array().map(Vec::len), Some(2));
        let r = h.http(Request::new("GET", "/v1/kv/nothing/").param("keys", ""));
        assert_eq!(r.status, 404);
        let r = h.http(Request::new("GET", "/v1/kv/").param("keys", ""));
        assert_eq!(json(&r).as_array().map(Vec::len), Some(4));
    }

    fn txn(h: &mut Harness, ops: serde_json::Value) -> Response {
        h.http(Request::new("PUT", "/v1/txn").body(ops.to_string()))
    }

    #[test]
    fn a_txn_is_all_or_nothing_and_reports_every_failure() {
        let mut h = h();
        let r = txn(
            &mut h,
            serde_json::json!([
                {"KV": {"Verb": "set", "Key": "a", "Value": "aGVsbG8="}},
                {"KV": {"Verb": "get", "Key": "a"}},
            ]),
        );
        assert_eq!(r.status, 200);
        let v = json(&r);
        assert_eq!(v["Errors"], serde_json::Value::Null);
        assert_eq!(v["Results"][0]["KV"]["Value"], serde_json::Value::Null);
        assert_eq!(v["Results"][1]["KV"]["Value"], "aGVsbG8=");
        let r = txn(
            &mut h,
            serde_json::json!([
                {"KV": {"Verb": "set", "Key": "b", "Value": "eA=="}},
                {"KV": {"Verb": "cas", "Key": "a", "Value": "eA==", "Index": 99}},
                {"KV": {"Verb": "check-not-exists", "Key": "a"}},
            ]),
        );
        assert_eq!(r.status, 409);
        assert_eq!(
            json(&r),
            serde_json::json!({"Results": null, "Errors": [
                {"OpIndex": 1, "What": "failed to set key \"a\", index is stale"},
                {"OpIndex": 2, "What": "key \"a\" exists"},
            ]})
        );
        assert_eq!(h.store().len("kvs"), 1, "b was rolled back");
        let r = txn(
            &mut h,
            serde_json::json!([{"KV": {"Verb": "frob", "Key": "a"}}]),
        );
        assert_eq!(json(&r)["Errors"][0]["What"], "unknown KV verb \"frob\"");
        let r = txn(
            &mut h,
            serde_json::json!([{"KV": {"Verb": "get", "Key": "a"}}]),
        );
        assert_eq!(json(&r)["Index"], 1, "a read-only txn carries its index");
        let many: Vec<_> = (0..65)
            .map(|i| serde_json::json!({"KV": {"Verb": "get", "Key": format!("k{i}")}}))
            .collect();
        let r = txn(&mut h, serde_json::json!(many));
        assert_eq!(r.status, 413);
        let r = h.http(Request::new("PUT", "/v1/txn").body("{"));
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).starts_with("Failed to parse body: "));
    }
}
