//! Consul's documented filter examples and bexpr's grammar and semantics, over JSON in
//! the shapes Consul's API answers.

use fsmhost_filter::{
    Filter, FilterError, MAX_DEPTH, MAX_EXPRESSION_LEN, filter_list, try_filter_list,
};
use serde_json::{Value, json};

/// An element of `/v1/catalog/service/<name>`.
fn catalog_service() -> Value {
    json!({
        "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
        "Node": "foobar",
        "Address": "192.168.10.10",
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "192.168.10.10", "wan": "10.0.10.10"},
        "NodeMeta": {"somekey": "somevalue", "os": "linux"},
        "CreateIndex": 51,
        "ModifyIndex": 51,
        "ServiceAddress": "172.17.0.3",
        "ServiceEnableTagOverride": false,
        "ServiceID": "32a2a47f7992:nodea:5000",
        "ServiceName": "web",
        "ServicePort": 5000,
        "ServiceMeta": {"web_meta_value": "baz", "version": "1.2.3"},
        "ServiceTaggedAddresses": {},
        "ServiceTags": ["prod", "primary", "v1"],
        "ServiceProxy": {"DestinationServiceName": "", "Upstreams": null},
        "ServiceConnect": {"Native": false},
        "Namespace": "default"
    })
}

/// An element of `/v1/health/service/<name>`.
fn health_entry() -> Value {
    json!({
        "Node": {
            "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
            "Node": "foobar",
            "Address": "10.1.10.12",
            "Datacenter": "dc1",
            "TaggedAddresses": {"lan": "10.1.10.12", "wan": "10.1.10.12"},
            "Meta": {"instance_type": "t2.medium", "os": "linux"}
        },
        "Service": {
            "ID": "redis",
            "Service": "redis",
            "Tags": ["primary", "prod"],
            "Address": "10.1.10.12",
            "Meta": {"redis_version": "4.0", "version": "v2"},
            "Port": 8000,
            "Weights": {"Passing": 10, "Warning": 1},
            "EnableTagOverride": false
        },
        "Checks": [
            {"Node": "foobar", "CheckID": "service:redis", "Name": "Service 'redis' check",
             "Status": "passing", "ServiceID": "redis", "ServiceName": "redis",
             "ServiceTags": ["primary"]},
            {"Node": "foobar", "CheckID": "serfHealth", "Name": "Serf Health Status",
             "Status": "passing", "ServiceID": "", "ServiceName": "", "ServiceTags": []}
        ]
    })
}

/// An element of `/v1/catalog/nodes`.
fn node() -> Value {
    json!({
        "ID": "ebdb3ff3-bc2d-4b3c-9a9f-2d7d0f4ce1a2",
        "Node": "baz",
        "Address": "10.1.10.11",
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.1.10.11", "wan": "10.1.10.11"},
        "Meta": {"env": "qa", "instance_type": "t2.medium"},
        "CreateIndex": 7,
        "ModifyIndex": 9
    })
}

/// A value of `/v1/agent/services` (the map's entries).
fn agent_service() -> Value {
    json!({
        "Kind": "",
        "ID": "redis1",
        "Service": "redis",
        "Tags": ["v1", "primary"],
        "Meta": {"env": "qa", "redis_version": "4.0"},
        "Port": 8000,
        "Address": "",
        "Weights": {"Passing": 10, "Warning": 1},
        "EnableTagOverride": false,
        "Datacenter": "dc1"
    })
}

/// The stack the depth tests run on: small next to a tokio worker's 2 MiB.
const STACK: usize = 1024 * 1024;

#[track_caller]
fn check(doc: &Value, expression: &str, want: bool) {
    let filter = Filter::parse(expression).unwrap_or_else(|e| panic!("{expression:?}: {e}"));
    assert_eq!(
        filter.evaluate(doc),
        Ok(want),
        "{expression:?} against {doc}"
    );
}

#[test]
fn documented_examples_catalog_service() {
    let doc = catalog_service();
    for (expression, want) in [
        (r#"ServiceTags contains "primary""#, true),
        ("ServiceTags contains primary", true),
        (r#""v1" in ServiceTags"#, true),
        ("v1 in ServiceTags", true),
        (r#""v2" in ServiceTags"#, false),
        (r#""v2" not in ServiceTags"#, true),
        ("ServiceTags not contains canary", true),
        ("NodeMeta.os == linux", true),
        (r#"NodeMeta["os"] == "linux""#, true),
        ("NodeMeta.os != linux", false),
        (r#"ServiceMeta.version == "1.2.3""#, true),
        ("ServiceMeta.version == `1.2.3`", true),
        (r#"ServiceMeta["version"] == "1.2.3""#, true),
        ("ServiceName == web and ServicePort == 5000", true),
        (r#"ServiceName matches "^we""#, true),
        (r#"ServiceName matches "^api""#, false),
        (r#"ServiceName not matches "^api""#, true),
        ("ServiceAddress matches `^172\\.17\\.`", true),
        ("NodeMeta is empty", false),
        ("NodeMeta is not empty", true),
        ("ServiceTaggedAddresses is empty", true),
        ("ServiceProxy.Upstreams is empty", true),
        ("ServiceProxy.DestinationServiceName is empty", true),
        ("somekey in NodeMeta", true),
        ("missing in NodeMeta", false),
        (r#""192.168" in Address"#, true),
        ("Address contains `10.10`", true),
        ("ServicePort == 5000", true),
        (r#"ServicePort == "5000""#, true),
        ("ServicePort != 5001", true),
        (r#"ServicePort == "0x1388""#, true),
        ("ServiceEnableTagOverride == false", true),
        ("ServiceEnableTagOverride == F", true),
        ("ServiceConnect.Native != true", true),
        ("ServiceTags.0 == prod", true),
        ("ServiceTags.2 == v1", true),
        ("ServiceTags.9 == v1", false),
        ("ServiceTags.9 is empty", true),
    ] {
        check(&doc, expression, want);
    }
}

#[test]
fn documented_examples_health_entry() {
    let doc = health_entry();
    for (expression, want) in [
        ("Node.Meta.os == linux and Service.Tags contains prod", true),
        (
            "Node.Meta.os == windows and Service.Tags contains prod",
            false,
        ),
        (r#"Service.Meta["redis_version"] == "4.0""#, true),
        ("Service.Meta.redis_version == 4.0", true),
        ("Service.Meta.version == v2", true),
        ("Service.Service matches `^red`", true),
        ("Service.Port == 8000", true),
        ("Service.Weights.Passing == 10", true),
        ("Checks is not empty", true),
        ("Checks.0.Status == passing", true),
        ("Checks.1.CheckID == serfHealth", true),
        ("Node.Node == foobar or Node.Node == baz", true),
        ("not (Node.Node == foobar)", false),
        (
            r#"Service.Tags contains "primary" and not (Service.Tags contains "canary")"#,
            true,
        ),
    ] {
        check(&doc, expression, want);
    }
}

#[test]
fn documented_examples_node_and_agent_service() {
    let n = node();
    for (expression, want) in [
        ("Meta.env == qa", true),
        ("Meta.env != qa", false),
        ("Meta.env == qa and Meta.instance_type == t2.medium", true),
        ("Meta.env is empty", false),
        ("Meta.missing is empty", true),
        ("Meta.missing == x", false),
        ("Meta.missing != x", true),
        (r#""x" in Meta.missing"#, false),
        (r#""x" not in Meta.missing"#, true),
        ("Meta.missing matches x", false),
        ("Meta.missing not matches x", true),
        ("Meta.missing is not empty", false),
        ("Missing.Deeper == x", false),
        ("ModifyIndex == 9", true),
        ("ModifyIndex > 9", false),
    ] {
        if expression.contains('>') {
            // Not bexpr: no ordering operators.
            assert!(Filter::parse(expression).is_err(), "{expression}");
            continue;
        }
        check(&n, expression, want);
    }
    let s = agent_service();
    for (expression, want) in [
        ("Service == redis", true),
        ("Meta.env == qa", true),
        ("v1 in Tags", true),
        ("Kind is empty", true),
        (r#"Service matches "^re" and Port == 8000"#, true),
    ] {
        check(&s, expression, want);
    }
}

#[test]
fn precedence_not_and_or() {
    // `a or b and c` is `a or (b and c)`; `not a and b` is `(not a) and b`.
    let doc = json!({"A": "1", "B": "1", "C": "0"});
    check(&doc, "A == 1 or B == 0 and C == 1", true);
    check(&doc, "(A == 1 or B == 0) and C == 1", false);
    check(&doc, "A == 0 and B == 1 or C == 0", true);
    check(&doc, "A == 0 and (B == 1 or C == 0)", false);
    check(&doc, "not A == 0 and B == 1", true);
    check(&doc, "not (A == 0 and B == 0)", true);
    check(&doc, "not A == 1 or B == 1", true);
    check(&doc, "not (A == 1 or B == 1)", false);
    check(&doc, "not not A == 1", true);
    check(&doc, "not not not A == 1", false);
    // The docs' example: `a and not b or c` == `(a and (not b)) or c`.
    check(&doc, "A == 1 and not B == 1 or C == 0", true);
    check(&doc, "A == 1 and not (B == 1 or C == 0)", false);
    // Whitespace is optional around == and inside parentheses.
    check(&doc, "(A==1)", true);
    check(&doc, "( A == 1 ) and B == 1", true);
    check(&doc, "\n\tA == 1\r\n", true);
}

#[test]
fn words_that_are_keywords_elsewhere() {
    let doc = json!({"not": "x", "Tags": ["not", "in"], "nothing": "y", "andy": "z"});
    check(&doc, "not == x", true);
    check(&doc, "not in Tags", true);
    check(&doc, "in in Tags", true);
    check(&doc, "nothing == y", true);
    check(&doc, "andy == z and nothing == y", true);
}

#[test]
fn strings_and_numbers() {
    let doc =
        json!({"S": "a\"b\n\u{e9}", "T": "x y", "N": -3, "F": 1.5, "U": 18446744073709551615u64});
    check(&doc, r#"S == "a\"b\n\u00e9""#, true);
    check(&doc, r#"S == "a\"b\n\xc3\xa9""#, true);
    check(&doc, "T == `x y`", true);
    check(&doc, r#"T == "x y""#, true);
    check(&doc, "N == -3", true);
    // "-3.0" does not convert to the integer field: an evaluation error, as in bexpr.
    let f = Filter::parse("N == -3.0").map(|f| f.evaluate(&doc));
    assert!(matches!(f, Ok(Err(FilterError::Evaluate(_)))), "{f:?}");
    check(&doc, "F == 1.5", true);
    check(&doc, "F == 1.50", true);
    check(&doc, "U == 18446744073709551615", true);
    check(&doc, "(N == -3)", true);
}

#[test]
fn evaluation_errors_follow_bexpr() {
    let doc = catalog_service();
    for expression in [
        "ServicePort == abc",
        "ServicePort is empty",
        "5000 in ServicePort",
        "ServicePort matches 5",
        "ServiceTags == prod",
        "ServiceEnableTagOverride == maybe",
    ] {
        let filter = Filter::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
        assert!(
            matches!(filter.evaluate(&doc), Err(FilterError::Evaluate(_))),
            "{expression}"
        );
        assert!(!filter.matches(&doc), "{expression}");
    }
    // `or` short-circuits before the failing operand, `and` after a false one.
    check(&doc, "ServiceName == web or ServicePort == abc", true);
    check(&doc, "ServiceName == api and ServicePort == abc", false);
}

#[test]
fn parse_errors() {
    for (expression, detail) in [
        ("", "1:1 (0)"),
        ("ServiceName ==", "no match found"),
        ("ServiceName = web", "no match found"),
        ("(ServiceName == web", "Unmatched parentheses"),
        ("ServiceName == web)", "no match found"),
        ("(A == 1)and B == 1", "no match found"),
        ("ServiceMeta.version == 1.2.3", "Invalid number literal"),
        ("ServiceName == \"web", "Unterminated string literal"),
        ("ServiceName == `web", "Unterminated string literal"),
        ("ServicePort == 12abc", "Invalid number literal"),
        ("ServicePort == 1.2.3", "Invalid number literal"),
        ("Meta[env] == x", "Invalid index"),
        (r#"Meta["env" == x"#, "Unclosed index expression"),
        ("web in 5", "Invalid selector"),
        (
            "ServiceName matches \"(\"",
            "failed to compile regular expression",
        ),
        ("ServiceName == web and", "no match found"),
        (
            "ServiceName == web or(ServiceName == api)",
            "no match found",
        ),
        ("not(ServiceName == web)", "no match found"),
        ("ServiceName == \"a\nb\"", "invalid syntax"),
        ("ServiceName == \"\\q\"", "invalid syntax"),
        ("ServiceName is nil", "no match found"),
        ("any ServiceTags as t { t == x }", "no match found"),
    ] {
        match Filter::parse(expression) {
            Ok(_) => panic!("{expression:?} parsed"),
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.starts_with("Failed to create boolean expression evaluator: "),
                    "{expression:?}: {text}"
                );
                assert!(text.contains(detail), "{expression:?}: {text}");
            }
        }
    }
}

#[test]
fn error_position_is_line_column_offset() {
    let e = Filter::parse("A == 1 and\nB == 12x")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("Failed to create boolean expression evaluator: 2:8 (18): Invalid number literal")
    );
}

#[test]
fn depth_is_bounded() {
    let nested = |n: usize| format!("{}A == 1{}", "(".repeat(n), ")".repeat(n));
    let nots = |n: usize| format!("{}A == 1", "not ".repeat(n));
    let doc = json!({"A": "1"});
    check(&doc, &nested(MAX_DEPTH), true);
    check(&doc, &nots(MAX_DEPTH), MAX_DEPTH.is_multiple_of(2));
    assert_eq!(
        Filter::parse(&nested(MAX_DEPTH + 1)).err(),
        Some(FilterError::TooDeep { max: MAX_DEPTH })
    );
    assert_eq!(
        Filter::parse(&nots(MAX_DEPTH + 1)).err(),
        Some(FilterError::TooDeep { max: MAX_DEPTH })
    );
    // A hostile client's 4,000 open parentheses: an error, not a stack overflow, on
    // a small stack.
    let hostile = "(".repeat(4000);
    let result = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || Filter::parse(&hostile).err())
        .map(|h| h.join());
    assert!(matches!(result, Ok(Ok(Some(FilterError::TooDeep { .. })))));
    // The deepest accepted expression parses and evaluates on that small stack too.
    let deepest = format!("{}{}", "not (".repeat(MAX_DEPTH / 2), "A == 1").to_owned()
        + &")".repeat(MAX_DEPTH / 2);
    let result = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || Filter::parse(&deepest).map(|f| f.matches(&json!({"A": "1"}))))
        .map(|h| h.join());
    assert!(matches!(result, Ok(Ok(Ok(true)))), "{result:?}");
}

#[test]
fn long_flat_chains_are_fine_and_length_is_bounded() {
    let chain = vec!["A == 1"; 700].join(" and ");
    assert!(chain.len() <= MAX_EXPRESSION_LEN);
    let result = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || Filter::parse(&chain).map(|f| f.matches(&json!({"A": "1"}))))
        .map(|h| h.join());
    assert!(matches!(result, Ok(Ok(Ok(true)))), "{result:?}");

    let long = format!("A == \"{}\"", "x".repeat(MAX_EXPRESSION_LEN));
    assert_eq!(
        Filter::parse(&long).err(),
        Some(FilterError::TooLong {
            len: long.len(),
            max: MAX_EXPRESSION_LEN
        })
    );
}

#[test]
fn filter_list_arrays_and_maps() {
    let mut other = catalog_service();
    other["ServiceTags"] = json!(["canary"]);
    other["ServiceID"] = json!("other");
    let list = json!([catalog_service(), other, 5]);
    let filter = Filter::parse("ServiceTags contains primary").unwrap_or_else(|e| panic!("{e}"));
    let kept = filter_list(&filter, list.clone());
    assert_eq!(kept, json!([catalog_service()]));
    assert_eq!(
        try_filter_list(&filter, list),
        Ok(json!([catalog_service()]))
    );

    let map = json!({"redis1": agent_service(), "web1": {"ID": "web1", "Service": "web", "Tags": [], "Meta": {}}});
    let filter = Filter::parse("Service == redis").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        filter_list(&filter, map),
        json!({"redis1": agent_service()})
    );

    let filter = Filter::parse("ServicePort == abc").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(filter_list(&filter, json!([catalog_service()])), json!([]));
    assert!(matches!(
        try_filter_list(&filter, json!([catalog_service()])),
        Err(FilterError::Evaluate(_))
    ));
    assert_eq!(filter_list(&filter, json!("scalar")), json!("scalar"));
}

#[test]
fn field_names_are_case_sensitive() {
    let doc = catalog_service();
    check(&doc, "servicename == web", false);
    check(&doc, "servicename is empty", true);
    check(&doc, "ServiceName == Web", false);
}
