//! Consul's rule examples and precedence: exact over prefix, longest prefix, deny wins a
//! tie between policies, default allow and deny, list/read/write, KeyWritePrefix, HCL and
//! JSON alike, enterprise namespace blocks, and parse errors.

use super::*;

fn rules(text: &str) -> Rules {
    Rules::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn deny_by_default(policies: &[&str]) -> Authorizer {
    let parsed: Vec<Rules> = policies.iter().map(|p| rules(p)).collect();
    Authorizer::new(&parsed, Access::Deny)
}

#[test]
fn the_rules_reference_example() {
    // From Consul's ACL rules reference: read everything, write under foo/, nothing
    // under foo/private/, and one key denied outright.
    let a = deny_by_default(&[r#"
        key_prefix "" { policy = "read" }
        key_prefix "foo/" { policy = "write" }
        key_prefix "foo/private/" { policy = "deny" }
        key "foo/bar/secret" { policy = "deny" }
        operator = "read"
    "#]);
    use Access::*;
    use Resource::Key;
    assert!(a.allows(Key, "anything", Read) && !a.allows(Key, "anything", Write));
    assert!(a.allows(Key, "foo/x", Write), "the longer prefix wins");
    assert!(
        !a.allows(Key, "foo/private/x", Read),
        "the longest prefix denies"
    );
    assert!(
        !a.allows(Key, "foo/bar/secret", Read),
        "an exact rule beats prefixes"
    );
    assert!(a.allows(Key, "foo/bar/secret2", Write), "exact means exact");
    assert!(a.allows_bare(Bare::Operator, Read) && !a.allows_bare(Bare::Operator, Write));
    assert!(
        !a.allows_bare(Bare::Acl, Read),
        "no rule: the default denies"
    );
    assert!(!a.allows(Resource::Node, "n1", Read));
}

#[test]
fn deny_wins_a_tie_between_policies_else_the_higher_level() {
    use Access::*;
    let a = deny_by_default(&[
        r#"key_prefix "app/" { policy = "write" }"#,
        "key_prefix \"app/\" { policy = \"deny\" }\nservice \"web\" { policy = \"read\" }",
        r#"service "web" { policy = "write" }"#,
    ]);
    assert!(!a.allows(Resource::Key, "app/x", Read), "deny wins the tie");
    assert!(
        a.allows(Resource::Service, "web", Write),
        "write beats read"
    );
}

#[test]
fn default_allow_lets_through_what_no_rule_denies() {
    let parsed = vec![rules(r#"key_prefix "secret/" { policy = "deny" }"#)];
    let a = Authorizer::new(&parsed, Access::Write);
    assert!(a.allows(Resource::Key, "public", Access::Write));
    assert!(!a.allows(Resource::Key, "secret/x", Access::Read));
    assert!(a.allows_bare(Bare::Operator, Access::Write));
    assert!(Authorizer::management().allows(Resource::Key, "secret/x", Access::Write));
}

#[test]
fn list_allows_read_and_list_and_write_allows_all() {
    use Access::*;
    let a = deny_by_default(&[
        "key_prefix \"l/\" { policy = \"list\" }\nkey_prefix \"r/\" { policy = \"read\" }",
    ]);
    assert!(a.allows(Resource::Key, "l/x", List) && a.allows(Resource::Key, "l/x", Read));
    assert!(!a.allows(Resource::Key, "l/x", Write));
    assert!(a.allows(Resource::Key, "r/x", Read) && !a.allows(Resource::Key, "r/x", List));
    assert!(
        Rules::parse(r#"node "n" { policy = "list" }"#).is_err(),
        "list is for keys"
    );
}

#[test]
fn key_write_prefix_needs_write_on_everything_under() {
    let a = deny_by_default(&[r#"
        key_prefix "app/" { policy = "write" }
        key "app/locked" { policy = "read" }
    "#]);
    assert!(!a.allows_key_write_prefix("app/"), "a read rule under it");
    assert!(a.allows_key_write_prefix("app/open/"));
    assert!(
        !a.allows_key_write_prefix(""),
        "nothing covers the root under deny"
    );
    let open = Authorizer::new(
        &[rules(r#"key "app/locked" { policy = "deny" }"#)],
        Access::Write,
    );
    assert!(!open.allows_key_write_prefix("app/"));
    assert!(open.allows_key_write_prefix("other/"));
}

#[test]
fn hcl_and_json_are_the_same_rules() {
    let hcl = rules(
        r#"key_prefix "" { policy = "read" }
           service "web" {
             policy = "write"
             intentions = "read"
           }
           operator = "write""#,
    );
    let json = rules(
        r#"{"key_prefix": {"": {"policy": "read"}},
            "service": {"web": {"policy": "write", "intentions": "read"}},
            "operator": "write"}"#,
    );
    assert_eq!(hcl, json);
    assert_eq!(rules(""), Rules::default());
}

#[test]
fn enterprise_namespace_and_partition_blocks() {
    let parsed = vec![rules(
        r#"
        key_prefix "" { policy = "read" }
        namespace "team" {
            key_prefix "" { policy = "write" }
        }
        namespace_prefix "ops-" {
            service_prefix "" { policy = "write" }
        }
        partition "east" {
            node_prefix "" { policy = "read" }
            namespace "apps" {
                key "cfg" { policy = "write" }
            }
        }"#,
    )];
    let ns = |p: &str, n: &str| Authorizer::in_namespace(&parsed, Access::Deny, p, n);
    assert!(ns("default", "default").allows(Resource::Key, "k", Access::Read));
    assert!(!ns("default", "default").allows(Resource::Key, "k", Access::Write));
    assert!(ns("default", "team").allows(Resource::Key, "k", Access::Write));
    assert!(!ns("default", "team").allows(Resource::Service, "s", Access::Read));
    assert!(ns("default", "ops-1").allows(Resource::Service, "s", Access::Write));
    assert!(ns("east", "default").allows(Resource::Node, "n", Access::Read));
    assert!(ns("east", "apps").allows(Resource::Key, "cfg", Access::Write));
    assert!(!ns("east", "apps").allows(Resource::Key, "other", Access::Read));
}

#[test]
fn errors_name_the_problem() {
    let e = |text: &str| Rules::parse(text).unwrap_err().to_string();
    assert!(e(r#"key "a" { policy = "maybe" }"#).contains("Invalid key policy"));
    assert!(e(r#"operator = "sometimes""#).contains("Invalid operator policy"));
    assert!(e(r#"keys "a" { policy = "read" }"#).contains("unknown rule \"keys\""));
    assert!(e("key \"a\" {\n policy = \"read\"\n color = \"red\"\n}").contains("unknown field"));
    assert!(e(r#"key "a" { }"#).contains("has no policy"));
    assert!(e("key_prefix { policy = ").starts_with("Failed to parse ACL rules"));
}

proptest::proptest! {
    #[test]
    fn parsing_never_panics(text in ".{0,200}") {
        let _ = Rules::parse(&text);
    }

    #[test]
    fn parsing_rule_shaped_noise_never_panics(
        word in "(key|key_prefix|node|service_prefix|operator|namespace|partition|acl)",
        seg in "[a-z/\"{}=]{0,12}",
        pol in "(read|write|list|deny|x|\"\"|\\{)",
    ) {
        let _ = Rules::parse(&format!("{word} \"{seg}\" {{ policy = \"{pol}\" }}"));
        let _ = Rules::parse(&format!("{word} = \"{pol}\""));
    }
}
