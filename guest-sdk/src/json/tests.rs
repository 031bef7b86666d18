//! The JSON layer against what Consul's clients send.

use super::*;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, PartialEq, Default)]
#[serde(rename_all = "PascalCase")]
struct Outer {
    #[serde(rename = "ID", default)]
    id: String,
    node: String,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    inner: Option<Inner>,
    #[serde(default)]
    list: Vec<Inner>,
    #[serde(default)]
    by_name: BTreeMap<String, Inner>,
    #[serde(default)]
    kind: Kind,
    #[serde(default)]
    port: u16,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
#[serde(rename_all = "PascalCase")]
struct Inner {
    #[serde(rename = "CheckID", default)]
    check_id: String,
    #[serde(default = "one")]
    passing: u32,
    #[serde(default, alias = "Aka")]
    other_name: String,
    #[serde(default)]
    tags: Vec<String>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize, Debug, PartialEq, Default)]
enum Kind {
    #[default]
    Typical,
    ConnectProxy,
    Weighted(u32),
}

fn outer(json: &str) -> Outer {
    from_slice(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn keys_match_fields_without_regard_to_case_at_every_depth() {
    let o = outer(
        r#"{"id":"u1","NODE":"n","meta":{"Env":"prod"},"inner":{"checkid":"c","PASSING":3,
            "tags":["a"]},"list":[{"checkId":"x"}],"byname":{"k":{"CHECKID":"y"}},
            "kind":"connectproxy","port":80}"#,
    );
    assert_eq!(o.id, "u1");
    assert_eq!(o.node, "n");
    assert_eq!(
        o.meta.get("Env").map(String::as_str),
        Some("prod"),
        "map keys kept"
    );
    let inner = o.inner.unwrap();
    assert_eq!((inner.check_id.as_str(), inner.passing), ("c", 3));
    assert_eq!(inner.tags, ["a"]);
    assert_eq!(o.list[0].check_id, "x");
    assert_eq!(o.by_name["k"].check_id, "y");
    assert_eq!(o.kind, Kind::ConnectProxy);
    assert_eq!(o.port, 80);
}

#[test]
fn null_is_absent_so_defaults_apply() {
    let o = outer(
        r#"{"ID":null,"Node":"n","Meta":null,"Inner":{"CheckID":null,"Passing":null,
            "Tags":null},"List":null,"ByName":{"gone":null},"Kind":null,"Port":null}"#,
    );
    assert_eq!(o.id, "");
    let inner = o.inner.unwrap();
    assert_eq!(inner.passing, 1, "the field's own default, not 0");
    assert!(inner.tags.is_empty());
    assert!(o.list.is_empty() && o.by_name.is_empty() && o.meta.is_empty());
    assert_eq!(o.kind, Kind::Typical);
    assert_eq!(outer(r#"{"Node":"n","Inner":null}"#).inner, None);
}

#[test]
fn an_exact_key_wins_over_a_case_insensitive_one() {
    let o = outer(r#"{"node":"lower","Node":"exact"}"#);
    assert_eq!(o.node, "exact");
    let o = outer(r#"{"Node":"exact","NODE":"upper"}"#);
    assert_eq!(o.node, "exact");
}

#[test]
fn aliases_and_enum_contents() {
    // serde lists aliases among the field names, so they match in any case too.
    let i: Inner = from_slice(br#"{"aka":"x"}"#).unwrap();
    assert_eq!(i.other_name, "x");
    let i: Inner = from_slice(br#"{"OtherName":"y"}"#).unwrap();
    assert_eq!(i.other_name, "y");
    let k: Kind = from_slice(br#"{"weighted":5}"#).unwrap();
    assert_eq!(k, Kind::Weighted(5));
}

#[test]
fn errors_still_name_the_problem() {
    let e = from_slice::<Outer>(br#"{"node":1}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid type: integer `1`, expected a string"),
        "{e}"
    );
    let e = from_slice::<Outer>(br#"{"ID":"x"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `Node`"), "{e}");
    let e = from_slice::<Outer>(br#"{"Node":"n","Kind":"Nope"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown variant `Nope`"), "{e}");
    assert!(from_slice::<Outer>(b"{").is_err());
    assert!(
        from_slice::<Outer>(b"null").is_err(),
        "a null body is no struct"
    );
}

#[test]
fn flattened_structs_keep_exact_keys_but_lose_nulls() {
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Flat {
        #[serde(default)]
        name: String,
        #[serde(flatten)]
        rest: BTreeMap<String, Value>,
    }
    let f: Flat = from_slice(br#"{"Name":"a","Extra":null,"More":1}"#).unwrap();
    assert_eq!(f.name, "a");
    assert_eq!(f.rest.keys().collect::<Vec<_>>(), ["More"]);
}

#[test]
fn integer_map_keys_and_tuples() {
    let m: BTreeMap<u32, (String, bool)> = from_slice(br#"{"7":["x",true]}"#).unwrap();
    assert_eq!(m[&7], ("x".to_string(), true));
    let v: Value = from_slice(br#"{"a":null,"b":[null,1]}"#).unwrap();
    assert_eq!(v, serde_json::json!({"b": [null, 1]}));
}
