//! The rule language and the authorizer against Consul's documented examples and its
//! `acl/policy_test.go` and `acl/policy_authorizer.go` behaviour.

use super::*;

fn rules(text: &str) -> Rules {
    match Rules::parse(text) {
        Ok(r) => r,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn error(text: &str) -> String {
    match Rules::parse(text) {
        Ok(r) => panic!("{text:?} should not parse, got {r:?}"),
        Err(e) => e.message().to_string(),
    }
}

fn deny_by_default(texts: &[&str]) -> Authorizer {
    Authorizer::new(
        &texts.iter().map(|t| rules(t)).collect::<Vec<_>>(),
        Access::Deny,
    )
}

fn allow_by_default(texts: &[&str]) -> Authorizer {
    Authorizer::new(
        &texts.iter().map(|t| rules(t)).collect::<Vec<_>>(),
        Access::Write,
    )
}

use Access::{Deny, List, Read, Write};

/// (segment, read, list, write) expectations for one resource.
fn check(authz: &Authorizer, resource: Resource, table: &[(&str, bool, bool, bool)]) {
    for (segment, read, list, write) in table {
        for (access, want) in [(Read, read), (List, list), (Write, write)] {
            assert_eq!(
                authz.allows(resource, segment, access),
                *want,
                "{resource:?} {segment:?} {access}"
            );
        }
    }
}

#[test]
fn the_docs_key_example() {
    // The ACL rules reference, "Key/Value Rules".
    let a = deny_by_default(&[r#"
        key_prefix "" { policy = "read" }
        key "foo" { policy = "write" }
        key "bar" { policy = "deny" }
    "#]);
    check(
        &a,
        Resource::Key,
        &[
            ("anything", true, false, false),
            ("foo", true, true, true),
            ("foo/child", true, false, false), // `key` is exact: the "" prefix applies
            ("bar", false, false, false),
            ("barn", true, false, false),
        ],
    );
}

#[test]
fn the_docs_policies_example_exact_over_prefix_and_longest_prefix() {
    // "ACL Policies": the example policy, in HCL.
    let a = deny_by_default(&[r#"
        key_prefix "" { policy = "read" }
        key_prefix "foo/" { policy = "write" }
        key_prefix "foo/private/" { policy = "deny" }
        key "foo/bar/secret" { policy = "deny" }
        operator = "read"
    "#]);
    check(
        &a,
        Resource::Key,
        &[
            ("x", true, false, false),
            ("foo/", true, true, true),
            ("foo/bar", true, true, true),
            ("foo/private/", false, false, false),
            ("foo/private/x", false, false, false),
            ("foo/bar/secret", false, false, false),
            ("foo/bar/secret2", true, true, true),
        ],
    );
    assert!(a.allows_bare(Bare::Operator, Read));
    assert!(!a.allows_bare(Bare::Operator, Write));
}

#[test]
fn the_docs_key_list_example() {
    // "List Policy for Keys": list on "bar", read on "baz", deny elsewhere.
    let a = deny_by_default(&[r#"
        key_prefix "" { policy = "deny" }
        key_prefix "bar" { policy = "list" }
        key_prefix "baz" { policy = "read" }
    "#]);
    check(
        &a,
        Resource::Key,
        &[
            ("foo", false, false, false),
            ("bar/x", true, true, false),
            ("baz/x", true, false, false),
        ],
    );
}

#[test]
fn the_docs_node_and_service_examples() {
    let nodes = deny_by_default(&[r#"
        node_prefix "" { policy = "read" }
        node "app" { policy = "write" }
        node "admin" { policy = "deny" }
    "#]);
    check(
        &nodes,
        Resource::Node,
        &[
            ("web", true, false, false),
            ("app", true, true, true),
            ("admin", false, false, false),
        ],
    );
    let services = allow_by_default(&[r#"
        service_prefix "" { policy = "read" }
        service "app" { policy = "write" }
        service "admin" { policy = "deny" }
    "#]);
    check(
        &services,
        Resource::Service,
        &[
            ("web", true, false, false), // a read rule refuses write even under allow
            ("app", true, true, true),
            ("admin", false, false, false),
        ],
    );
    // Nothing written for keys: the default (allow) decides.
    assert!(services.allows(Resource::Key, "k", Write));
}

#[test]
fn the_docs_agent_event_query_session_examples() {
    let a = deny_by_default(&[r#"
        agent "foo" { policy = "write" }
        agent_prefix "" { policy = "read" }
        agent_prefix "bar" { policy = "deny" }
        event_prefix "" { policy = "read" }
        event "deploy" { policy = "write" }
        query_prefix "" { policy = "read" }
        query "foo" { policy = "write" }
        session_prefix "" { policy = "read" }
        session "app" { policy = "write" }
    "#]);
    check(
        &a,
        Resource::Agent,
        &[
            ("foo", true, true, true),
            ("x", true, false, false),
            ("bark", false, false, false),
        ],
    );
    check(
        &a,
        Resource::Event,
        &[("deploy", true, true, true), ("other", true, false, false)],
    );
    check(
        &a,
        Resource::Query,
        &[("foo", true, true, true), ("foobar", true, false, false)],
    );
    check(
        &a,
        Resource::Session,
        &[("app", true, true, true), ("db", true, false, false)],
    );
}

#[test]
fn bare_rules_and_their_defaults() {
    let a = deny_by_default(&[r#"operator = "write"
        keyring = "read""#]);
    assert!(a.allows_bare(Bare::Operator, Write));
    assert!(a.allows_bare(Bare::Keyring, Read));
    assert!(!a.allows_bare(Bare::Keyring, Write));
    // mesh and peering fall back to operator when unset (policy_authorizer.go).
    assert!(a.allows_bare(Bare::Mesh, Write));
    assert!(a.allows_bare(Bare::Peering, Write));
    assert!(!a.allows_bare(Bare::Acl, Read));
    let b = deny_by_default(&[r#"operator = "write"
        mesh = "read""#]);
    assert!(!b.allows_bare(Bare::Mesh, Write));
    assert!(b.allows_bare(Bare::Mesh, Read));
    // Default allow grants everything but acl (static_authorizer.go: AllowAll has no
    // management, so neither ACL read/write nor snapshots).
    let open = allow_by_default(&[]);
    for bare in [Bare::Keyring, Bare::Mesh, Bare::Operator, Bare::Peering] {
        assert!(open.allows_bare(bare, Write), "{bare:?}");
    }
    assert!(!open.allows_bare(Bare::Acl, Read));
    assert!(!open.allows_bare(Bare::Acl, Write));
    let acl = allow_by_default(&[r#"acl = "write""#]);
    assert!(acl.allows_bare(Bare::Acl, Write));
}

#[test]
fn default_allow_versus_deny() {
    let closed = deny_by_default(&[]);
    let open = allow_by_default(&[]);
    for r in Resource::ALL {
        for access in [Read, List, Write] {
            assert!(!closed.allows(r, "x", access), "{r:?} {access}");
            assert!(open.allows(r, "x", access), "{r:?} {access}");
        }
    }
    // A deny rule is not overridden by the allow default; a read rule refuses list.
    let a = allow_by_default(&[r#"key_prefix "secret/" { policy = "deny" }
        key_prefix "ro/" { policy = "read" }"#]);
    assert!(!a.allows(Resource::Key, "secret/x", Read));
    assert!(!a.allows(Resource::Key, "ro/x", List));
    assert!(a.allows(Resource::Key, "other", Write));
    let m = Authorizer::management();
    assert!(m.is_management() && !open.is_management());
    assert!(m.allows_bare(Bare::Acl, Write) && m.allows(Resource::Key, "x", Write));
    assert!(m.allows_key_write_prefix(""));
}

#[test]
fn policies_merge_deny_wins_then_write_list_read() {
    // policy_merger.go: for the same segment, deny > write > list > read.
    let pairs = [
        ("read", "write", Write),
        ("write", "deny", Deny),
        ("deny", "read", Deny),
        ("list", "read", List),
        ("list", "write", Write),
    ];
    for (a, b, want) in pairs {
        for (x, y) in [(a, b), (b, a)] {
            let p1 = format!(
                r#"key "k" {{ policy = "{x}" }} operator = "{}""#,
                if x == "list" { "read" } else { x }
            );
            let p2 = format!(
                r#"key "k" {{ policy = "{y}" }} operator = "{}""#,
                if y == "list" { "read" } else { y }
            );
            let merged = Rules::merged(&[rules(&p1), rules(&p2)]);
            assert_eq!(
                merged
                    .top
                    .rule(Resource::Key, Match::Exact, "k")
                    .map(|r| r.access),
                Some(want),
                "{x} + {y}"
            );
        }
    }
    // Across two policies of one token, a tie on the same prefix is won by deny, but the
    // other policy's more specific rule still wins over it.
    let a = deny_by_default(&[
        r#"key_prefix "app/" { policy = "write" }"#,
        r#"key_prefix "app/" { policy = "deny" }
           key "app/open" { policy = "read" }"#,
    ]);
    assert!(!a.allows(Resource::Key, "app/x", Read));
    assert!(a.allows(Resource::Key, "app/open", Read));
    // Duplicate blocks in one policy merge the same way.
    let one = rules(
        r#"service "web" { policy = "read" }
        service "web" { policy = "write" }"#,
    );
    assert_eq!(
        one.top
            .rule(Resource::Service, Match::Exact, "web")
            .map(|r| r.access),
        Some(Write)
    );
}

#[test]
fn key_write_prefix_refuses_a_nested_rule_below_write() {
    let a = deny_by_default(&[r#"
        key_prefix "app/" { policy = "write" }
        key_prefix "app/locked/" { policy = "read" }
        key "app/one/secret" { policy = "deny" }
        key_prefix "other/" { policy = "write" }
    "#]);
    assert!(a.allows(Resource::Key, "app/x", Write));
    assert!(!a.allows_key_write_prefix("app/"));
    assert!(!a.allows_key_write_prefix("app/one/"));
    assert!(!a.allows_key_write_prefix("app/locked/x"));
    assert!(a.allows_key_write_prefix("app/two/"));
    assert!(a.allows_key_write_prefix("other/"));
    assert!(!a.allows_key_write_prefix("nothing/")); // no rule: the deny default
    assert!(!a.allows_key_write_prefix("")); // rules under "" deny write
    // No rule above, none below: the default decides.
    let open = allow_by_default(&[r#"key_prefix "ro/" { policy = "read" }"#]);
    assert!(open.allows_key_write_prefix("rw/"));
    assert!(!open.allows_key_write_prefix("ro/"));
    assert!(!open.allows_key_write_prefix("r"));
}

#[test]
fn hcl_and_json_give_equal_rules() {
    let hcl = r#"
        agent_prefix "bar" { policy = "write" }
        agent "foo" { policy = "read" }
        event_prefix "" { policy = "read" }
        key_prefix "foo/" { policy = "write" }
        key "foo/bar/baz" { policy = "deny" }
        keyring = "deny"
        node "foo" { policy = "write" }
        operator = "deny"
        mesh = "deny"
        peering = "deny"
        acl = "read"
        service_prefix "" { policy = "write" }
        service "foo" {
            policy = "read"
            intentions = "write"
        }
        session_prefix "baz" { policy = "deny" }
        query "foo" { policy = "write" }
    "#;
    let json = r#"{
        "agent_prefix": {"bar": {"policy": "write"}},
        "agent": {"foo": {"policy": "read"}},
        "event_prefix": {"": {"policy": "read"}},
        "key_prefix": {"foo/": {"policy": "write"}},
        "key": {"foo/bar/baz": {"policy": "deny"}},
        "keyring": "deny",
        "node": {"foo": {"policy": "write"}},
        "operator": "deny", "mesh": "deny", "peering": "deny", "acl": "read",
        "service_prefix": {"": {"policy": "write"}},
        "service": {"foo": {"policy": "read", "intentions": "write"}},
        "session_prefix": {"baz": {"policy": "deny"}},
        "query": {"foo": {"policy": "write"}}
    }"#;
    let (h, j) = (rules(hcl), rules(json));
    assert_eq!(h, j);
    assert_eq!(
        h.top.rule(Resource::Service, Match::Exact, "foo"),
        Some(SegmentRule {
            access: Read,
            intentions: Some(Write)
        })
    );
    assert_eq!(h.top.bare(Bare::Acl), Some(Read));
    // The docs' example is the same in both forms too.
    assert_eq!(
        rules(
            r#"key_prefix "" { policy = "read" }
            operator = "read""#
        ),
        rules(r#"{"key_prefix": {"": {"policy": "read"}}, "operator": "read"}"#)
    );
    assert_eq!(rules(""), Rules::default());
    assert_eq!(rules("  \n"), Rules::default());
    assert_eq!(rules("{}"), Rules::default());
    assert_eq!(rules(r#"operator = """#), Rules::default()); // empty: allowed, no rule
    assert_eq!(
        rules(r#"key "K" { policy = "WRITE" }"#),
        rules(r#"key "K" { policy = "write" }"#)
    );
}

#[test]
fn intentions_follow_the_service_rule_unless_set() {
    let a = deny_by_default(&[r#"
        service "web" { policy = "write" }
        service "db" { policy = "read" intentions = "write" }
        service "gone" { policy = "deny" }
    "#]);
    assert!(a.allows_intention("web", Read) && !a.allows_intention("web", Write));
    assert!(a.allows_intention("db", Write));
    assert!(!a.allows_intention("gone", Read));
    assert!(!a.allows_intention("other", Read));
}

#[test]
fn enterprise_namespace_and_partition_blocks() {
    // The docs' namespace and admin partition examples, merged into one policy.
    let text = r#"
        namespace_prefix "" {
            policy = "write"
            service_prefix "" { policy = "read" }
            node_prefix "" { policy = "read" }
        }
        namespace "foo" {
            acl = "write"
            policy = "write"
            key_prefix "" { policy = "write" }
            service_prefix "" { policy = "write" }
        }
        partition "example" {
            mesh = "write"
            peering = "write"
            node "my-node" { policy = "write" }
            namespace "ex-namespace" { service_prefix "" { policy = "write" } }
            namespace_prefix "exns-" { key_prefix "" { policy = "read" } }
        }
        partition_prefix "example-" {
            mesh = "read"
            node "my-node" { policy = "read" }
        }
        key_prefix "" { policy = "read" }
    "#;
    let r = rules(text);
    assert_eq!(r.namespaces.len(), 2);
    assert_eq!(r.partitions.len(), 2);
    let foo = &r.namespaces[&(Match::Exact, "foo".to_string())];
    assert_eq!(foo.policy, Some(Write));
    assert_eq!(foo.rules.bare(Bare::Acl), Some(Write));
    let a = Authorizer::new(&[r], Deny);
    // OSS view: the top level only.
    assert!(a.allows(Resource::Key, "k", Read) && !a.allows(Resource::Key, "k", Write));
    // `namespace_prefix ""` covers namespace `default` too.
    assert!(a.allows(Resource::Service, "web", Read));
    assert!(a.allows_in("default", "foo", Resource::Key, "k", Write));
    assert!(a.allows_in("default", "foo", Resource::Service, "web", Write));
    assert!(a.allows_bare_in("default", "foo", Bare::Acl, Write));
    assert!(a.allows_in("default", "bar", Resource::Service, "web", Read));
    assert!(!a.allows_in("default", "bar", Resource::Service, "web", Write));
    assert!(!a.allows_in("default", "bar", Resource::Key, "k", Read)); // top level is ns default
    assert!(a.allows_in("example", "default", Resource::Node, "my-node", Write));
    assert!(a.allows_bare_in("example", "default", Bare::Mesh, Write));
    assert!(a.allows_in("example", "ex-namespace", Resource::Service, "s", Write));
    assert!(a.allows_in("example", "exns-1", Resource::Key, "k", Read));
    assert!(!a.allows_in("example", "other", Resource::Key, "k", Read));
    assert!(a.allows_in("example-2", "default", Resource::Node, "my-node", Read));
    assert!(!a.allows_in("example-2", "default", Resource::Node, "my-node", Write));
    assert!(!a.allows_bare_in("example-2", "default", Bare::Mesh, Write));
    assert!(!a.allows_in("elsewhere", "default", Resource::Key, "k", Read));
    // JSON form of a partition block.
    let json = rules(
        r#"{"partition": {"example": {"mesh": "write",
        "node": {"my-node": {"policy": "write"}},
        "namespace_prefix": {"exns-": {"key_prefix": {"": {"policy": "read"}}}}}}}"#,
    );
    let hcl = rules(
        r#"partition "example" {
        mesh = "write"
        node "my-node" { policy = "write" }
        namespace_prefix "exns-" { key_prefix "" { policy = "read" } }
    }"#,
    );
    assert_eq!(json, hcl);
}

#[test]
fn parse_errors_name_the_bad_part() {
    let cases = [
        (r#"key "foo" { policy = "nope" }"#, "Invalid key policy"),
        (
            r#"key_prefix "foo" { policy = "nope" }"#,
            "Invalid key_prefix policy",
        ),
        (r#"node "foo" { policy = "list" }"#, "Invalid node policy"),
        (
            r#"service_prefix "" { policy = "nope" }"#,
            "Invalid service_prefix policy",
        ),
        (
            r#"service "foo" { policy = "write" intentions = "foo" }"#,
            "Invalid service intentions policy",
        ),
        (r#"session "foo" { }"#, "Invalid session policy"),
        (r#"acl = "list""#, "Invalid acl policy"),
        (r#"operator = "nope""#, "Invalid operator policy"),
        (r#"mesh = "nope""#, "Invalid mesh policy"),
        (r#"peering = "nope""#, "Invalid peering policy"),
        (r#"keyring = "nope""#, "Invalid keyring policy"),
        (
            r#"{"key": {"foo": {"policy": "nope"}}}"#,
            "Invalid key policy",
        ),
        (r#"{ "operator": "nope" }"#, "Invalid operator policy"),
        (
            r#"key "foo" { policy = "read""#,
            "Failed to parse ACL rules",
        ),
        (
            r#"frobnicate "x" { policy = "read" }"#,
            "Failed to parse ACL rules: unknown rule \"frobnicate\"",
        ),
        (
            r#"key "foo" { policy = "read" colour = "red" }"#,
            "unknown field \"colour\"",
        ),
        (
            r#"operator = "read"
            operator = "write""#,
            "redefined attribute",
        ),
        (
            r#"key "k" {
            policy = "read"
            policy = "write"
        }"#,
            "redefined attribute",
        ),
        // One-line HCL 1 forms are laid out for HCL 2, and still checked.
        (
            r#"key "k" { policy = "read" policy = "write" }"#,
            "Failed to parse ACL rules",
        ),
        (r#"{"key": "oops"}"#, "key must be a block"),
        (r#"{"key": ["#, "Failed to parse ACL rules"),
        ("[1]", "Failed to parse ACL rules"),
        (
            r#"namespace "a" { partition "b" { } }"#,
            "partition blocks are not allowed (in namespace \"a\")",
        ),
        (
            r#"namespace "a" { key "k" { policy = "nope" } }"#,
            "Invalid key policy: key \"k\" { policy = \"nope\" } (in namespace \"a\")",
        ),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(
            got.contains(want),
            "{text:?}: {got:?} should contain {want:?}"
        );
    }
    // The syntax error names the line.
    let got = error("key_prefix \"\" {\n  policy = \"read\"\n}\nkey \"x\" { policy = }\n");
    assert!(got.contains('4'), "{got}");
    assert!(error(&"{".repeat(10_000)).contains("nested more than"));
}

#[test]
fn hcl1_one_line_forms_parse_as_consul_parses_them() {
    // Consul's policy_test.go writes rules this way; HCL 2 alone refuses them.
    let one_line = rules(
        r#"# a comment with { braces and a "quote
        service "a" { policy = "read" intentions = "write" } key "k" { policy = "list" } // more }
        service "b" { policy = "write", intentions = "read" } /* a { block } comment */ operator = "read""#,
    );
    let laid_out = rules(
        r#"service "a" {
          policy = "read"
          intentions = "write"
        }
        key "k" {
          policy = "list"
        }
        service "b" {
          policy = "write"
          intentions = "read"
        }
        operator = "read""#,
    );
    assert_eq!(one_line, laid_out);
    // A label with braces inside its quotes is kept as written.
    let r = rules(r#"key "a{b}c" { policy = "read" } key "d" { policy = "write" }"#);
    assert!(r.top.rule(Resource::Key, Match::Exact, "a{b}c").is_some());
    assert_eq!(
        serde_json::to_string(&Access::List).ok().as_deref(),
        Some("\"list\"")
    );
    assert_eq!(Access::from_policy("Write"), Some(Write));
}

mod never_panics;
