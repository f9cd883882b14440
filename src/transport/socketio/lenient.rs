//! A Socket.IO event argument as JSON, binary attachments included. socket.io-client sends a
//! `Buffer` (or an `ArrayBuffer`) anywhere in an argument as a binary attachment, which
//! `serde_json::Value` cannot hold: such an event would reach the core with no data at all.
//! Here bytes become an array of byte values, as the adapter path delivers a worker's binary
//! (`adapter_wire.rs`).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// An event argument read as JSON ([`Lenient::into_inner`]).
pub(super) struct Lenient(Value);

impl Lenient {
    /// The JSON value.
    pub(super) fn into_inner(self) -> Value {
        self.0
    }
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValue).map(Lenient)
    }
}

struct AnyValue;

impl<'de> Visitor<'de> for AnyValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value or bytes")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(byte_values(v))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(byte_values(&v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Lenient::deserialize(d).map(Lenient::into_inner)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Lenient::deserialize(d).map(Lenient::into_inner)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Lenient(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some((k, Lenient(v))) = map.next_entry::<String, Lenient>()? {
            fields.insert(k, v);
        }
        Ok(Value::Object(fields))
    }
}

fn byte_values(bytes: &[u8]) -> Value {
    Value::Array(bytes.iter().map(|b| Value::from(*b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_reads_as_json() {
        let v = json!({"rooms": ["a", "b"], "n": -1, "f": 0.5, "t": true, "z": null});
        let read: Lenient = serde_json::from_value(v.clone()).expect("reads");
        assert_eq!(read.into_inner(), v);
    }

    #[test]
    fn bytes_read_as_byte_values() {
        // What a binary attachment looks like to a deserializer: bytes.
        let d = serde::de::value::BytesDeserializer::<serde::de::value::Error>::new(&[1, 2, 255]);
        let read = Lenient::deserialize(d).expect("reads");
        assert_eq!(read.into_inner(), json!([1, 2, 255]));
    }
}
