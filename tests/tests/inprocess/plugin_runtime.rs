//! The plugin runtime end to end: real components built by the build pipeline, loaded by the
//! host, applied against the state store. Hostile fixtures fail with their exact error,
//! write nothing, and kv keeps working beside them.

use crate::kv_and;
use fsmhost::plugin::{
    CallError, Limits, LoadError, LoadedPlugin, PluginSet, Runtime, RuntimeConfig,
};
use fsmhost::state::Store;
use fsmhost_plugin_kv as kv;
use fsmhost_tests::{bundled, cbor, decode, fixture};

const TEST_LIMITS: Limits = Limits {
    fuel: 50_000_000,
    memory_bytes: 64 << 20,
    write_bytes: 8 << 20,
};

fn runtime() -> Runtime {
    runtime_with(TEST_LIMITS)
}

fn runtime_with(limits: Limits) -> Runtime {
    crate::cached_runtime(limits)
}

/// Small budgets, so the budget tests run out quickly.
const SMALL_BUDGETS: Limits = Limits {
    fuel: 5_000_000,
    memory_bytes: 64 << 20,
    write_bytes: 4 << 20,
};

/// kv plus the named fixture, loaded as one set, with a store of their tables.
struct Node {
    set: PluginSet,
    store: Store,
    index: u64,
}

impl Node {
    fn new(rt: &Runtime, fixture_name: Option<&str>) -> Node {
        let set = kv_and(rt, fixture_name.as_slice());
        let store = Store::new(set.schema().clone());
        Node {
            set,
            store,
            index: 0,
        }
    }

    fn plugin(&self, name: &str) -> &LoadedPlugin {
        self.set.get(name).expect("loaded")
    }

    /// Applies at the next index; commits on success, aborts on error (as the FSM will).
    fn apply(&mut self, plugin: &str, command: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        self.index += 1;
        let mut txn = self.store.write(self.index);
        let out = self
            .set
            .get(plugin)
            .expect("loaded")
            .apply(&mut txn, command, payload, 1_000)?;
        txn.commit();
        Ok(out)
    }

    fn kv_set(&mut self, key: &str, value: &str) -> bool {
        let req = kv::SetRequest {
            tenancy: Default::default(),
            key: key.into(),
            value: value.into(),
            flags: 0,
        };
        decode(
            &self
                .apply("kv", kv::SET.name(), &cbor(&req))
                .expect("kv set works"),
        )
    }

    fn kv_get(&self, key: &str) -> Option<kv::Entry> {
        let args = cbor(&kv::GetArgs {
            tenancy: Default::default(),
            key: key.into(),
        });
        decode(
            &self
                .plugin("kv")
                .query(&self.store.read(), kv::GET.name(), &args)
                .expect("kv get works"),
        )
    }

    /// A hostile command must fail with `expected`, write nothing, and leave kv working.
    fn assert_contained(&mut self, plugin: &str, command: &str, table: &str, expected: CallError) {
        self.kv_set("before", "1");
        let err = self
            .apply(plugin, command, &cbor(&()))
            .expect_err("the command must fail");
        assert_eq!(err, expected);
        assert_eq!(
            self.store.read().len(table).unwrap(),
            0,
            "the row written before the failure is gone"
        );
        assert!(self.kv_set("after", "2"));
        assert_eq!(self.kv_get("after").unwrap().value, b"2");
        assert_eq!(self.kv_get("before").unwrap().value, b"1");
    }
}

#[test]
fn kv_component_imports_nothing_outside_the_contract() {
    let mut imports = Vec::new();
    let mut depth = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bundled("kv")) {
        // Only the outer component's imports reach the host; nested components and modules
        // (wit-component's shims) import from the outer component itself.
        match payload.expect("valid component") {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(import.expect("valid import").name.name.to_string());
                }
            }
            _ => {}
        }
    }
    assert!(!imports.is_empty(), "kv imports the state interface");
    for name in &imports {
        assert!(
            name.starts_with("fsmhost:plugin/")
                && name.ends_with(&format!("@{}", fsmhost::plugin::CONTRACT_VERSION)),
            "kv imports {name}"
        );
    }
    assert!(
        imports
            .iter()
            .any(|n| n.starts_with("fsmhost:plugin/state@")),
        "{imports:?}"
    );
}

#[test]
fn kv_describes_itself() {
    let rt = runtime();
    let p = rt.load("bundled:kv", bundled("kv")).unwrap();
    let d = p.description();
    assert_eq!((d.name.as_str(), d.edition.as_str()), ("kv", "oss"));
    let tables: Vec<_> = d.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tables,
        ["kvs", "tombstones", "lock_delays", "tombstone_marks"]
    );
    let commands = [
        kv::SET.name(),
        kv::CAS.name(),
        kv::DELETE.name(),
        kv::DELETE_CAS.name(),
        kv::DELETE_TREE.name(),
    ];
    for c in commands {
        assert!(d.commands.iter().any(|x| x == c), "missing command {c}");
    }
    for q in [kv::GET.name(), kv::LIST.name(), kv::KEYS.name()] {
        assert!(d.queries.iter().any(|x| x == q), "missing query {q}");
    }
}

#[test]
fn kv_semantics_through_wasm() {
    let rt = runtime();
    let mut n = Node::new(&rt, None);
    assert!(n.kv_set("app/a", "1")); // 1
    assert!(n.kv_set("app/a", "2")); // 2
    let e = n.kv_get("app/a").unwrap();
    assert_eq!(
        (e.create_index, e.modify_index, e.value.as_slice()),
        (1, 2, &b"2"[..])
    );

    let cas = |index| kv::CasRequest {
        tenancy: Default::default(),
        key: "app/b".into(),
        value: b"x".to_vec(),
        flags: 7,
        index,
    };
    assert!(decode::<bool>(
        &n.apply("kv", kv::CAS.name(), &cbor(&cas(0))).unwrap()
    )); // 3
    assert!(!decode::<bool>(
        &n.apply("kv", kv::CAS.name(), &cbor(&cas(0))).unwrap()
    )); // 4, no-op
    assert_eq!(n.kv_get("app/b").unwrap().flags, 7);

    n.apply(
        "kv",
        kv::DELETE.name(),
        &cbor(&kv::DeleteRequest {
            tenancy: Default::default(),
            key: "app/b".into(),
        }),
    )
    .unwrap(); // 5
    let list: kv::ListResult = decode(
        &n.plugin("kv")
            .query(
                &n.store.read(),
                kv::LIST.name(),
                &cbor(&kv::ListArgs {
                    tenancy: Default::default(),
                    prefix: "app/".into(),
                }),
            )
            .unwrap(),
    );
    assert_eq!(list.entries.len(), 1);
    assert_eq!(
        list.index, 5,
        "the tombstone keeps the prefix index from going backwards"
    );
    assert_eq!(n.store.read().table_stamp("tombstones").unwrap(), 5);
}

/// A deterministic mix of every kv command over a small key space, as (command, payload).
fn command_mix(count: u32) -> Vec<(&'static str, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let key = format!("k/{:03}/{}", i % 37, i % 11);
            match i % 7 {
                0..=2 => (
                    kv::SET.name(),
                    cbor(&kv::SetRequest {
                        tenancy: Default::default(),
                        key,
                        value: i.to_be_bytes().to_vec(),
                        flags: u64::from(i % 3),
                    }),
                ),
                3 => (
                    kv::CAS.name(),
                    cbor(&kv::CasRequest {
                        tenancy: Default::default(),
                        key,
                        value: b"cas".to_vec(),
                        flags: 0,
                        index: u64::from(i / 2),
                    }),
                ),
                4 => (
                    kv::DELETE.name(),
                    cbor(&kv::DeleteRequest {
                        tenancy: Default::default(),
                        key,
                    }),
                ),
                5 => (
                    kv::DELETE_CAS.name(),
                    cbor(&kv::DeleteCasRequest {
                        tenancy: Default::default(),
                        key,
                        index: u64::from(i - 1),
                    }),
                ),
                _ => (
                    kv::DELETE_TREE.name(),
                    cbor(&kv::DeleteTreeRequest {
                        tenancy: Default::default(),
                        prefix: format!("k/{:02}", i % 5),
                    }),
                ),
            }
        })
        .collect()
}

#[test]
fn wasm_and_native_give_the_same_answers() {
    let rt = runtime();
    let mut n = Node::new(&rt, None);
    let mut h = fsmhost_guest::Harness::new(kv::plugin()).unwrap();
    for (i, (command, payload)) in command_mix(600).into_iter().enumerate() {
        let wasm = n.apply("kv", command, &payload).unwrap();
        let ctx = fsmhost_guest::Ctx {
            index: i as u64 + 1,
            timestamp_ms: 1_000,
        };
        let native = h.apply_raw(ctx, command, &payload).unwrap();
        assert_eq!(wasm, native, "command {i}: {command}");
    }
    assert_eq!(n.store.read().len("kvs").unwrap(), h.store().len("kvs"));
    assert_eq!(
        n.store.read().len("tombstones").unwrap(),
        h.store().len("tombstones")
    );
    for prefix in ["k/", "k/01", "k/036/", "nothing"] {
        let args = kv::KeysArgs {
            tenancy: Default::default(),
            prefix: prefix.into(),
            separator: Some("/".into()),
        };
        let wasm: kv::KeysResult = decode(
            &n.plugin("kv")
                .query(&n.store.read(), kv::KEYS.name(), &cbor(&args))
                .unwrap(),
        );
        let native = h.ask(&kv::KEYS, &args).unwrap();
        assert_eq!(wasm, native, "prefix {prefix}");
        let args = kv::ListArgs {
            tenancy: Default::default(),
            prefix: prefix.into(),
        };
        let wasm: kv::ListResult = decode(
            &n.plugin("kv")
                .query(&n.store.read(), kv::LIST.name(), &cbor(&args))
                .unwrap(),
        );
        let native = h.ask(&kv::LIST, &args).unwrap();
        assert_eq!(wasm, native, "prefix {prefix}");
    }
}

#[test]
fn plugin_errors_are_typed_and_write_nothing() {
    let rt = runtime();
    let mut n = Node::new(&rt, None);
    let err = n
        .apply("kv", kv::SET.name(), &cbor(&"not a request"))
        .unwrap_err();
    match err {
        CallError::Plugin {
            plugin,
            call,
            kind,
            message,
        } => {
            assert_eq!((plugin.as_str(), call.as_str()), ("kv", "command set"));
            assert_eq!(kind, fsmhost::plugin::ErrorKind::BadRequest);
            assert!(message.contains("payload of command set"), "{message}");
        }
        other => panic!("expected a plugin error, got {other}"),
    }
    let err = n.apply("kv", "no-such-command", b"").unwrap_err();
    assert_eq!(err.to_string(), "plugin kv has no command no-such-command");
    let err = n
        .plugin("kv")
        .query(&n.store.read(), "nope", b"")
        .unwrap_err();
    assert_eq!(err.to_string(), "plugin kv has no query nope");
}

#[test]
fn a_query_reads_its_snapshot() {
    let rt = runtime();
    let mut n = Node::new(&rt, None);
    n.kv_set("a", "1");
    let snapshot = n.store.read();
    n.kv_set("a", "2");
    let args = cbor(&kv::GetArgs {
        tenancy: Default::default(),
        key: "a".into(),
    });
    let old: Option<kv::Entry> = decode(
        &n.plugin("kv")
            .query(&snapshot, kv::GET.name(), &args)
            .unwrap(),
    );
    assert_eq!(old.unwrap().value, b"1");
}

#[test]
fn loop_forever_runs_out_of_fuel() {
    let rt = runtime();
    let mut n = Node::new(&rt, Some("loop-forever"));
    n.assert_contained(
        "loop-forever",
        "spin",
        "loop_rows",
        CallError::FuelExhausted {
            plugin: "loop-forever".into(),
            call: "command spin".into(),
            limit: TEST_LIMITS.fuel,
        },
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let rt = runtime();
    let mut n = Node::new(&rt, Some("alloc-unbounded"));
    n.kv_set("before", "1");
    let err = n.apply("alloc-unbounded", "grow", &cbor(&())).unwrap_err();
    match &err {
        CallError::MemoryExhausted {
            plugin,
            call,
            limit,
            requested,
        } => {
            assert_eq!(
                (plugin.as_str(), call.as_str()),
                ("alloc-unbounded", "command grow")
            );
            assert_eq!(*limit, TEST_LIMITS.memory_bytes);
            assert!(*requested > *limit, "asked for {requested}");
        }
        other => panic!("expected memory exhaustion, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("exceeded its memory limit of 67108864 bytes"),
        "{err}"
    );
    assert_eq!(n.store.read().len("alloc_rows").unwrap(), 0);
    assert!(n.kv_set("after", "2"));
}

#[test]
fn a_panic_is_a_trap_with_the_panic_message() {
    let rt = runtime();
    let mut n = Node::new(&rt, Some("panicker"));
    n.kv_set("before", "1"); // index 1
    let err = n.apply("panicker", "boom", &cbor(&())).unwrap_err(); // index 2
    let CallError::Trap { plugin, call, trap } = &err else {
        panic!("expected a trap, got {err}");
    };
    assert_eq!(
        (plugin.as_str(), call.as_str()),
        ("panicker", "command boom")
    );
    assert!(
        trap.starts_with("the plugin panicked at tests/fixtures/panicker/src/lib.rs:"),
        "{trap}"
    );
    assert!(trap.ends_with(": boom at index 2"), "{trap}");
    assert_eq!(n.store.read().len("panic_rows").unwrap(), 0);
    assert!(n.kv_set("after", "2"));
}

#[test]
fn a_panic_in_a_query_is_a_trap_and_kv_still_answers() {
    let rt = runtime();
    let mut n = Node::new(&rt, Some("panicker"));
    n.kv_set("k", "v");
    let err = n
        .plugin("panicker")
        .query(&n.store.read(), "boom", &cbor(&()))
        .unwrap_err();
    let CallError::Trap { call, trap, .. } = &err else {
        panic!("expected a trap, got {err}");
    };
    assert_eq!(call, "query boom");
    assert!(trap.ends_with(": query boom"), "{trap}");
    assert_eq!(n.kv_get("k").unwrap().value, b"v");
}

#[test]
fn route_runs_on_a_warm_instance_that_a_trap_retires() {
    use fsmhost::plugin::{HttpAction, HttpRequest};
    let rt = runtime();
    let n = Node::new(&rt, Some("panicker"));
    let p = n.plugin("panicker");
    let anyone: fsmhost::plugin::Permits = std::sync::Arc::new(|_, _, _, _, _| true);
    let route = |path: &str| {
        p.route(
            &HttpRequest {
                method: "GET".into(),
                path: path.into(),
                ..HttpRequest::default()
            },
            &anyone,
        )
    };
    let count = |path: &str| match route(path).expect("routed").action {
        HttpAction::Respond(r) => String::from_utf8(r.body).unwrap(),
        other => panic!("expected a response, got {other:?}"),
    };
    // One caller at a time reuses the one warm instance: its static counter goes on.
    assert_eq!(count("/v1/panicker/a"), "1");
    assert_eq!(count("/v1/panicker/b"), "2");
    let err = route("/v1/panicker/boom").unwrap_err();
    let CallError::Trap { call, trap, .. } = &err else {
        panic!("expected a trap, got {err}");
    };
    assert_eq!(call, "route GET /v1/panicker/boom");
    assert!(trap.ends_with("route boom after 3 requests"), "{trap}");
    // The trapped instance was dropped: the next request gets a fresh one.
    assert_eq!(count("/v1/panicker/c"), "1");
}

#[test]
fn the_write_budget_fails_a_command_that_ignores_its_errors() {
    let rt = runtime_with(SMALL_BUDGETS);
    let mut n = Node::new(&rt, Some("alloc-unbounded"));
    n.assert_contained(
        "alloc-unbounded",
        "hoard-rows",
        "alloc_rows",
        CallError::BudgetExceeded {
            plugin: "alloc-unbounded".into(),
            call: "command hoard-rows".into(),
            budget: format!("write budget of {} bytes", SMALL_BUDGETS.write_bytes),
        },
    );
}

#[test]
fn host_work_is_metered() {
    // Each `get` of a 64 KiB row costs the guest a few hundred instructions but the host a
    // 64 KiB copy: without a host-work budget this would run for a very long time.
    let rt = runtime_with(SMALL_BUDGETS);
    let mut n = Node::new(&rt, Some("loop-forever"));
    n.assert_contained(
        "loop-forever",
        "read-forever",
        "loop_rows",
        CallError::BudgetExceeded {
            plugin: "loop-forever".into(),
            call: "command read-forever".into(),
            budget: format!("host-work budget of {} fuel units", SMALL_BUDGETS.fuel),
        },
    );
}

#[test]
fn a_stack_overflow_is_a_trap() {
    let rt = runtime();
    let mut n = Node::new(&rt, Some("panicker"));
    n.kv_set("before", "1");
    let err = n.apply("panicker", "recurse", &cbor(&())).unwrap_err();
    match &err {
        CallError::Trap { plugin, call, trap } => {
            assert_eq!(
                (plugin.as_str(), call.as_str()),
                ("panicker", "command recurse")
            );
            assert!(
                trap.contains("call stack exhausted")
                    || trap.contains("out of bounds memory access"),
                "{trap}"
            );
        }
        other => panic!("expected a trap, got {other}"),
    }
    assert_eq!(n.store.read().len("panic_rows").unwrap(), 0);
    assert!(n.kv_set("after", "2"));
}

#[test]
fn the_same_failure_happens_the_same_way_every_time() {
    // Determinism: a fresh instance per command means a repeated hostile command fails
    // identically, and kv's state is unaffected.
    let rt = runtime();
    let mut n = Node::new(&rt, Some("loop-forever"));
    let first = n.apply("loop-forever", "spin", &cbor(&())).unwrap_err();
    for _ in 0..3 {
        assert_eq!(
            n.apply("loop-forever", "spin", &cbor(&())).unwrap_err(),
            first
        );
    }
}

#[test]
fn an_invalid_description_is_refused_naming_the_table() {
    let rt = runtime();
    let mut n = Node::new(&rt, None);
    n.kv_set("a", "1");
    let err = rt
        .load("bad-describe.wasm", fixture("bad-describe"))
        .unwrap_err();
    assert!(
        n.kv_set("b", "2"),
        "kv keeps working beside a refused plugin"
    );
    assert!(matches!(err, LoadError::InvalidDescription { .. }));
    assert_eq!(
        err.to_string(),
        "plugin bad-describe: invalid description: table broken has no index named id"
    );
}

#[test]
fn a_wasi_import_is_refused_naming_the_import() {
    let rt = runtime();
    let mut n = Node::new(&rt, None);
    let err = rt
        .load("wasi-import.wasm", fixture("wasi-import"))
        .unwrap_err();
    assert!(n.kv_set("still", "works"));
    assert_eq!(
        err.to_string(),
        format!(
            "plugin wasi-import.wasm imports `wasi:cli/environment@0.2.0`, which is outside the \
             fsmhost:plugin@{} contract; build it for wasm32-unknown-unknown with fsmhost-guest (no WASI)",
            fsmhost::plugin::CONTRACT_VERSION
        )
    );
}

#[test]
fn garbage_bytes_are_refused() {
    let err = runtime()
        .load("junk.wasm", b"\0asm\x0d\0\x01\0garbage")
        .unwrap_err();
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("plugin junk.wasm: not a loadable WebAssembly component"),
        "{err}"
    );
}

#[test]
fn two_plugins_cannot_share_a_table_or_a_name() {
    let rt = runtime();
    let a = rt.load("a", bundled("kv")).unwrap();
    let b = rt.load("b", bundled("kv")).unwrap();
    let err = PluginSet::new(vec![a, b]).err().expect("refused");
    assert_eq!(
        err.to_string(),
        "plugins a and b both declare the plugin name kv"
    );
}

#[test]
fn the_artifact_cache_spares_a_restart_the_compile() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        limits: TEST_LIMITS,
        cache_dir: Some(dir.path().join("cache")),
    };
    let first = Runtime::new(config.clone())
        .unwrap()
        .load("kv", bundled("kv"))
        .unwrap();
    assert!(first.was_compiled());
    // A new runtime stands for a restarted server.
    let second = Runtime::new(config.clone())
        .unwrap()
        .load("kv", bundled("kv"))
        .unwrap();
    assert!(!second.was_compiled(), "loaded from the cache");
    assert_eq!(first.hash(), second.hash());

    // A corrupt artifact is not trusted blindly: wasmtime refuses it and we recompile.
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not an artifact").unwrap();
    }
    let third = Runtime::new(config)
        .unwrap()
        .load("kv", bundled("kv"))
        .unwrap();
    assert!(third.was_compiled());
    let set = PluginSet::new(vec![third]).unwrap();
    let mut n = Node {
        store: Store::new(set.schema().clone()),
        set,
        index: 0,
    };
    assert!(n.kv_set("still", "works"));
}

#[test]
fn index_exports_agree_with_the_keys_sent_by_insert() {
    let rt = runtime();
    let kvp = rt.load("kv", bundled("kv")).unwrap();
    let entry = kv::Entry {
        key: "a/b".into(),
        value: b"v".to_vec(),
        session: Some("s1".into()),
        ..Default::default()
    };
    let keys = kvp.index("kvs", &cbor(&entry)).unwrap();
    let native = kv::KVS.index_keys(&entry);
    assert_eq!(keys.len(), native.len());
    for (h, n) in keys.iter().zip(&native) {
        assert_eq!((&h.index, &h.keys), (&n.index, &n.keys));
    }
    // kvs.id is looked up by a key in its tenancy (empty in the OSS edition).
    let at = |k: &str| cbor(&kv::key_in(&Default::default(), k));
    let prefix = kvp.index_args("kvs", "id", &at("a/"), true).unwrap();
    assert_eq!(prefix, b"a/");
    let exact = kvp.index_args("kvs", "id", &at("a/b"), false).unwrap();
    assert_eq!(exact, b"a/b\0");
    let err = kvp
        .index_args("kvs", "nope", &cbor(&"x"), false)
        .unwrap_err();
    assert!(
        err.to_string().contains("table kvs has no index nope"),
        "{err}"
    );
}

#[test]
fn the_example_plugin_runs_beside_kv() {
    let rt = runtime();
    let users = rt
        .load("examples/users-plugin", fixture("users-plugin"))
        .unwrap();
    assert_eq!(users.description().name, "users");
    let kvp = rt.load("bundled:kv", bundled("kv")).unwrap();
    let set = PluginSet::new(vec![kvp, users]).unwrap();
    let store = Store::new(set.schema().clone());
    let mut txn = store.write(1);
    let req = example_users_plugin::Register {
        name: "ada".into(),
        email: Some("ada@example.com".into()),
        groups: vec!["ops".into()],
    };
    let out = set
        .get("users")
        .unwrap()
        .apply(
            &mut txn,
            example_users_plugin::REGISTER.name(),
            &cbor(&req),
            0,
        )
        .unwrap();
    assert!(decode::<bool>(&out));
    txn.commit();
    let found: Vec<example_users_plugin::User> = decode(
        &set.get("users")
            .unwrap()
            .query(
                &store.read(),
                example_users_plugin::BY_GROUP.name(),
                &cbor(&"ops"),
            )
            .unwrap(),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].create_index, 1);
}
