//! JSON input decoded as Consul decodes it (Go's `encoding/json`), for every plugin.
//!
//! Consul's clients send bodies `serde_json` alone would refuse or misread:
//! - **field names in any case**: Go matches a key to a struct field without regard to
//!   case (an exact match wins), so py-consul's `{"node": ..., "address": ...}` registers a
//!   node as `{"Node": ..., "Address": ...}` does;
//! - **`null` for anything unset**: Go's client marshals every nil map, slice and pointer as
//!   `null` (`"TaggedAddresses": null`, `"Tags": null`, `"Check": null`), and Go decodes a
//!   `null` as "leave the field as it is".
//!
//! [`from_slice`] reads the bytes into a [`serde_json::Value`] and deserializes the target
//! from it through a deserializer that, for every struct on the way down (it knows each
//! struct's field names), renames a key that matches a field case-insensitively to the
//! field's name and drops every key whose value is `null`, so a missing field's
//! `#[serde(default)]` applies. Inside maps it drops `null` values too (Go leaves a nil
//! entry's zero value; here the entry is absent). Field names are the ones serde sees: after
//! `#[serde(rename)]` and `rename_all`, plus aliases. Enum variant names given as strings
//! match case-insensitively too.
//!
//! Limits: a struct with a `#[serde(flatten)]` field is deserialized by serde as a map, and
//! serde does not tell the deserializer its field names, so its keys must match exactly
//! (`null`s are still dropped); give such a type a flatten-free mirror to deserialize from
//! (`#[serde(from = "...")]`). Untagged and internally tagged enums buffer their content
//! and decode it with serde's own rules below that point.
//!
//! ```
//! use serde::Deserialize;
//! use std::collections::BTreeMap;
//!
//! #[derive(Deserialize, Debug, PartialEq)]
//! #[serde(rename_all = "PascalCase")]
//! struct Registration {
//!     #[serde(rename = "ID", default)]
//!     id: String,
//!     node: String,
//!     #[serde(default)]
//!     tagged_addresses: BTreeMap<String, String>,
//!     #[serde(default)]
//!     service: Option<Service>,
//! }
//! #[derive(Deserialize, Debug, PartialEq)]
//! #[serde(rename_all = "PascalCase")]
//! struct Service {
//!     service: String,
//!     #[serde(default)]
//!     tags: Vec<String>,
//! }
//!
//! // What Go's client sends, and what py-consul sends: the same registration.
//! let go = br#"{"ID":"","Node":"n1","TaggedAddresses":null,"Service":{"Service":"web","Tags":null}}"#;
//! let py = br#"{"node":"n1","id":"","service":{"service":"web"}}"#;
//! let a: Registration = fsmhost_guest::json::from_slice(go).unwrap();
//! let b: Registration = fsmhost_guest::json::from_slice(py).unwrap();
//! assert_eq!(a, b);
//! assert_eq!(a.service.unwrap().tags, Vec::<String>::new());
//! ```

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_json::{Map, Value};

/// The error of a body that is not JSON or does not fit the target type.
pub type JsonError = serde_json::Error;

/// Decodes JSON `bytes` as `T` the way Go's `encoding/json` would fill the equivalent Go
/// struct: keys matched to fields without regard to case, `null` as absent (see the module
/// documentation).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let value: Value = serde_json::from_slice(bytes)?;
    from_value(value)
}

/// Deserializes `T` from a JSON value with the same rules as [`from_slice`].
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, JsonError> {
    T::deserialize(Lenient(value))
}

/// A JSON value deserialized with Go's rules.
struct Lenient(Value);

/// The object's entries without the `null` ones.
fn without_nulls(map: Map<String, Value>) -> Vec<(String, Value)> {
    map.into_iter().filter(|(_, v)| !v.is_null()).collect()
}

/// The object's entries without the `null` ones, each key renamed to the field it matches
/// without regard to case (a key that is a field's exact name keeps it, and wins over
/// another key that only matches it case-insensitively).
fn renamed(map: Map<String, Value>, fields: &[&str]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(map.len());
    let exact: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| map.contains_key(*f))
        .collect();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        if fields.contains(&key.as_str()) {
            out.push((key, value));
            continue;
        }
        match fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
            // The exact key is there too: it wins, this one is dropped.
            Some(f) if exact.contains(f) => {}
            Some(f) if out.iter().any(|(k, _)| k == f) => {}
            Some(f) => out.push((f.to_string(), value)),
            None => out.push((key, value)),
        }
    }
    out
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = JsonError;
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, JsonError> {
        self.0
            .next()
            .map(|v| seed.deserialize(Lenient(v)))
            .transpose()
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries {
    entries: std::vec::IntoIter<(String, Value)>,
    value: Option<Value>,
}

impl Entries {
    fn new(entries: Vec<(String, Value)>) -> Self {
        Entries {
            entries: entries.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Entries {
    type Error = JsonError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, JsonError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(Key(key)).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, JsonError> {
        match self.value.take() {
            Some(v) => seed.deserialize(Lenient(v)),
            None => Err(de::Error::custom(
                "a map value was asked for before its key",
            )),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A map key: a string, which may also be read as a number (`{"1": ...}` into a map with
/// integer keys, as serde_json allows).
struct Key(String);

impl<'de> de::Deserializer<'de> for Key {
    type Error = JsonError;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        visitor.visit_string(self.0)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        visitor.visit_some(self)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        Lenient(Value::String(self.0)).deserialize_enum(name, variants, visitor)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0.as_str() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => visitor.visit_string(self.0),
        }
    }
    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any f32 f64
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, JsonError> {
        self.number(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, JsonError> {
        self.number(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, JsonError> {
        self.number(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, JsonError> {
        self.number(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, JsonError> {
        self.number(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, JsonError> {
        self.number(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, JsonError> {
        self.number(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, JsonError> {
        self.number(v)
    }
}

impl Key {
    fn number<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        if let Ok(n) = self.0.parse::<u64>() {
            return visitor.visit_u64(n);
        }
        if let Ok(n) = self.0.parse::<i64>() {
            return visitor.visit_i64(n);
        }
        visitor.visit_string(self.0)
    }
}

struct Variant {
    name: String,
    content: Option<Value>,
}

impl<'de> EnumAccess<'de> for Variant {
    type Error = JsonError;
    type Variant = Content;
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Content), JsonError> {
        let name: de::value::StringDeserializer<JsonError> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, Content(self.content)))
    }
}

/// A variant's content (none for a unit variant given as a string).
struct Content(Option<Value>);

impl<'de> VariantAccess<'de> for Content {
    type Error = JsonError;
    fn unit_variant(self) -> Result<(), JsonError> {
        match self.0 {
            None | Some(Value::Null) => Ok(()),
            Some(v) => Err(de::Error::invalid_type(unexpected(&v), &"a unit variant")),
        }
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, JsonError> {
        seed.deserialize(Lenient(self.0.unwrap_or(Value::Null)))
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        de::Deserializer::deserialize_seq(Lenient(self.0.unwrap_or(Value::Null)), visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        de::Deserializer::deserialize_struct(
            Lenient(self.0.unwrap_or(Value::Null)),
            "",
            fields,
            visitor,
        )
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("a number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// Scalars go to serde_json's own deserializer for `Value` (nothing below them to treat).
macro_rules! scalar {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
            self.0.$method(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Lenient {
    type Error = JsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.into_iter())),
            Value::Object(map) => visitor.visit_map(Entries::new(without_nulls(map))),
            other => other.deserialize_any(visitor),
        }
    }

    scalar! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_identifier deserialize_i128
        deserialize_u128
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Lenient(other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries::new(without_nulls(map))),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries::new(renamed(map, fields))),
            Value::Array(items) => visitor.visit_seq(Seq(items.into_iter())),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        let variant = |name: String| {
            let exact = variants.contains(&name.as_str());
            match variants.iter().find(|v| v.eq_ignore_ascii_case(&name)) {
                Some(v) if !exact => v.to_string(),
                _ => name,
            }
        };
        match self.0 {
            Value::String(s) => visitor.visit_enum(Variant {
                name: variant(s),
                content: None,
            }),
            Value::Object(map) if map.len() == 1 => {
                let Some((key, content)) = map.into_iter().next() else {
                    return Err(de::Error::custom("an enum object with no entry"));
                };
                visitor.visit_enum(Variant {
                    name: variant(key),
                    content: Some(content),
                })
            }
            other => other.deserialize_enum(name, variants, visitor),
        }
    }
}

#[cfg(test)]
mod tests;
