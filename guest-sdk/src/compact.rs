//! Compact records: a table's objects stored as a CBOR array of their fields' values, in
//! declaration order, without the field names ([`crate::Table::compact`]).
//!
//! Owns: the serde adapters that write a record's top-level struct as an array
//! ([`Compact`]) and read a record stored either way ([`Record`]). Only the top level
//! changes: nested structs keep their field names, so a record's shape is the table's
//! layout and a nested type can change with serde's usual rules.
//!
//! Invariant, enforced when a record is written: a compact record may skip (with
//! `skip_serializing_if`) only its last fields, which must then have a serde default;
//! a field skipped before one that is written would shift every later value, so that is
//! an error naming both fields.

use serde::de::{Deserialize, Deserializer, Visitor};
use serde::ser::{self, Serialize, SerializeTuple, Serializer};

/// `self.0`, serialized with its top-level struct as an array of its fields' values.
pub(crate) struct Compact<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Compact<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(TopSer(s))
    }
}

/// A record read from a table, whether it was stored compact (an array) or with field
/// names (a map): a derived struct visitor takes either.
pub(crate) struct Record<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Record<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(TopDe(d)).map(Record)
    }
}

/// Forwards everything to the wrapped serializer but a struct, which becomes a tuple.
struct TopSer<S>(S);

/// A struct's fields written as tuple elements.
struct Fields<T> {
    tuple: T,
    skipped: Option<&'static str>,
}

macro_rules! forward_ser {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        fn $method(self, $($arg: $ty),*) -> Result<$ret, S::Error> {
            self.0.$method($($arg),*)
        }
    )*};
}

impl<S: Serializer> Serializer for TopSer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = S::SerializeSeq;
    type SerializeTuple = S::SerializeTuple;
    type SerializeTupleStruct = S::SerializeTupleStruct;
    type SerializeTupleVariant = S::SerializeTupleVariant;
    type SerializeMap = S::SerializeMap;
    type SerializeStruct = Fields<S::SerializeTuple>;
    type SerializeStructVariant = S::SerializeStructVariant;

    forward_ser! {
        serialize_bool(v: bool) -> S::Ok;
        serialize_i8(v: i8) -> S::Ok;
        serialize_i16(v: i16) -> S::Ok;
        serialize_i32(v: i32) -> S::Ok;
        serialize_i64(v: i64) -> S::Ok;
        serialize_i128(v: i128) -> S::Ok;
        serialize_u8(v: u8) -> S::Ok;
        serialize_u16(v: u16) -> S::Ok;
        serialize_u32(v: u32) -> S::Ok;
        serialize_u64(v: u64) -> S::Ok;
        serialize_u128(v: u128) -> S::Ok;
        serialize_f32(v: f32) -> S::Ok;
        serialize_f64(v: f64) -> S::Ok;
        serialize_char(v: char) -> S::Ok;
        serialize_str(v: &str) -> S::Ok;
        serialize_bytes(v: &[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(name: &'static str) -> S::Ok;
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> S::Ok;
        serialize_seq(len: Option<usize>) -> S::SerializeSeq;
        serialize_tuple(len: usize) -> S::SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> S::SerializeTupleStruct;
        serialize_tuple_variant(
            name: &'static str, index: u32, variant: &'static str, len: usize
        ) -> S::SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> S::SerializeMap;
        serialize_struct_variant(
            name: &'static str, index: u32, variant: &'static str, len: usize
        ) -> S::SerializeStructVariant;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(v)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, v)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_variant(name, index, variant, v)
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Ok(Fields {
            tuple: self.0.serialize_tuple(len)?,
            skipped: None,
        })
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

impl<T: SerializeTuple> ser::SerializeStruct for Fields<T> {
    type Ok = T::Ok;
    type Error = T::Error;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &V,
    ) -> Result<(), T::Error> {
        if let Some(skipped) = self.skipped {
            return Err(ser::Error::custom(format!(
                "field {skipped} is skipped before field {key}: a compact record may skip \
                 only its last fields (move {skipped} after {key}, or stop skipping it)"
            )));
        }
        self.tuple.serialize_element(v)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), T::Error> {
        self.skipped.get_or_insert(key);
        Ok(())
    }
    fn end(self) -> Result<T::Ok, T::Error> {
        self.tuple.end()
    }
}

/// Forwards everything to the wrapped deserializer but a struct, which is read as whatever
/// the input holds (a derived struct visitor takes an array or a map).
struct TopDe<D>(D);

macro_rules! forward_de {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for TopDe<D> {
    type Error = D::Error;

    forward_de! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Tenancy, from_cbor, to_cbor};

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Default, Clone)]
    struct Rec {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        n: u64,
        session: Option<String>,
        #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
        tenancy: Tenancy,
    }

    fn rec() -> Rec {
        Rec {
            key: "a/b".into(),
            value: vec![1, 2, 3],
            n: 7,
            session: None,
            tenancy: Tenancy::default(),
        }
    }

    fn decode(bytes: &[u8]) -> Rec {
        let r: Record<Rec> = from_cbor(bytes, "record").expect("decode");
        r.0
    }

    #[test]
    fn a_compact_record_is_an_array_of_values_and_reads_back() {
        let compact = to_cbor(&Compact(&rec())).expect("encode");
        let named = to_cbor(&rec()).expect("encode");
        assert_eq!(compact[0], 0x84, "an array of the four written fields");
        // The names' text and headers: "key" 4, "value" 6, "n" 2, "session" 8.
        assert_eq!(named.len() - compact.len(), 20, "{compact:?} vs {named:?}");
        assert_eq!(decode(&compact), rec());
        assert_eq!(
            decode(&named),
            rec(),
            "records stored with names still read"
        );
    }

    #[test]
    fn a_skipped_last_field_takes_its_default_and_a_written_one_is_read() {
        let mut r = rec();
        r.tenancy = Tenancy {
            partition: "p".into(),
            namespace: "n".into(),
        };
        let compact = to_cbor(&Compact(&r)).expect("encode");
        assert_eq!(compact[0], 0x85);
        assert_eq!(decode(&compact), r);
    }

    #[derive(serde::Serialize, Debug)]
    struct SkipsEarly {
        #[serde(skip_serializing_if = "Option::is_none")]
        first: Option<u8>,
        second: u8,
    }

    #[test]
    fn skipping_a_field_before_a_written_one_is_refused() {
        let err = to_cbor(&Compact(&SkipsEarly {
            first: None,
            second: 1,
        }))
        .expect_err("would shift the fields");
        assert!(
            err.message
                .contains("field first is skipped before field second"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_compact_record_with_a_missing_field_is_an_error() {
        let short = to_cbor(&("a/b", serde_bytes::Bytes::new(b"v"))).expect("encode");
        let err = from_cbor::<Record<Rec>>(&short, "record")
            .err()
            .expect("too short");
        assert!(err.message.contains("decoding record"), "{}", err.message);
    }
}
