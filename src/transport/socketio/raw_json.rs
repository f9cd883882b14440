//! [`RawJson`]: JSON text that is emitted as it is, and [`sealed_record`], which finds the
//! sealed records of an encrypted socket without parsing them.
//!
//! A Socket.IO emit takes a `Serialize` argument, and serde_json writes JSON text verbatim
//! only for its `RawValue`, whose constructors all parse the text first. For the sealed
//! records of an encrypted socket, which the core has just written in a fixed shape
//! (`crate::crypto::frame`), that parse was the door's largest cost of its own: about a
//! tenth of the server's CPU in an encrypted Socket.IO fan-out (BENCHMARKS.md). So a record
//! of that exact shape is recognized with a check of its fixed parts and one pass over its
//! base64 (no quote, no backslash: nothing to escape, nothing to end a string early), and
//! handed to the serializer as [`RawJson`]. Anything else still goes through the parse.
//!
//! [`RawJson`] serializes the way `RawValue` does: as a struct named by serde_json's raw-value
//! token, whose one field is the text. That token is not public API, so
//! `the_serializer_writes_raw_json_verbatim` checks it: a serde_json that changed it fails the
//! tests, not the wire.

use std::borrow::Cow;

use crate::crypto::frame::shape::{CT, EVENT, IV, SEQ};
use serde::ser::{Serialize, SerializeStruct, SerializeTuple, Serializer};
use serde_json::value::RawValue;

/// The name under which serde_json's serializer takes a struct's one field as raw JSON text
/// (what `RawValue` serializes as).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Valid JSON text, written out verbatim by serde_json (and so by socketioxide's parser).
#[derive(Debug, Clone, Copy)]
pub(super) struct RawJson<'a>(&'a str);

impl<'a> RawJson<'a> {
    /// The text of a parsed raw value.
    pub(super) fn from_raw(raw: &'a RawValue) -> Self {
        Self(raw.get())
    }

    /// The JSON text.
    #[cfg(test)]
    pub(super) fn get(self) -> &'a str {
        self.0
    }
}

impl RawJson<'_> {
    /// A copy that owns its text (for an emit held until engine.io has room).
    pub(super) fn to_owned_json(self) -> OwnedRawJson {
        OwnedRawJson(self.0.to_owned())
    }
}

/// An owned [`RawJson`].
#[derive(Debug)]
pub(super) struct OwnedRawJson(String);

impl OwnedRawJson {
    /// The text, to emit again.
    pub(super) fn as_raw(&self) -> RawJson<'_> {
        RawJson(&self.0)
    }
}

/// The arguments of one emit: the one argument of almost every event, or for a plaintext
/// socket that asked for positions a positioned message's data and its position
/// `{"stream","offset","epoch"}` (`docs/PROTOCOL.md` §13), emitted as two arguments.
#[derive(Debug, Clone)]
pub(super) enum Args<'a> {
    /// One argument.
    One(RawJson<'a>),
    /// The data, then the position object's JSON text.
    Positioned(RawJson<'a>, Cow<'a, str>),
}

impl Args<'_> {
    /// A copy that owns its text (for an emit held until engine.io has room).
    pub(super) fn to_owned_args(&self) -> OwnedArgs {
        match self {
            Self::One(data) => OwnedArgs {
                data: data.to_owned_json(),
                position: None,
            },
            Self::Positioned(data, position) => OwnedArgs {
                data: data.to_owned_json(),
                position: Some(position.clone().into_owned()),
            },
        }
    }
}

/// Owned [`Args`].
#[derive(Debug)]
pub(super) struct OwnedArgs {
    data: OwnedRawJson,
    position: Option<String>,
}

impl OwnedArgs {
    /// The arguments, to emit again.
    pub(super) fn as_args(&self) -> Args<'_> {
        match &self.position {
            None => Args::One(self.data.as_raw()),
            Some(position) => Args::Positioned(self.data.as_raw(), Cow::Borrowed(position)),
        }
    }
}

impl Serialize for Args<'_> {
    /// One argument as itself; two as a tuple, which socketioxide spreads into arguments.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::One(data) => data.serialize(serializer),
            Self::Positioned(data, position) => {
                let mut args = serializer.serialize_tuple(2)?;
                args.serialize_element(data)?;
                args.serialize_element(&RawJson(position))?;
                args.end()
            }
        }
    }
}

impl Serialize for RawJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        s.serialize_field(RAW_VALUE_TOKEN, self.0)?;
        s.end()
    }
}

/// A sealed record as the core writes it:
/// `{"event":"encrypted","data":{"iv":"<b64>","ct":"<b64>"[,"seq":N]}}`. Its `data` and
/// the whole frame, both valid JSON, when `frame` has exactly that shape; `None` for any other
/// frame (which the caller then parses).
pub(super) fn sealed_record(frame: &str) -> Option<Sealed<'_>> {
    let data = frame.strip_prefix(EVENT)?.strip_suffix('}')?;
    let fields = data.strip_prefix(IV)?.strip_suffix('}')?;
    // `<iv>","ct":"<ct>"` or `<iv>","ct":"<ct>","seq":N`.
    let fields = match fields.strip_suffix('"') {
        Some(fields) => fields,
        None => {
            let digits = fields.trim_end_matches(|c: char| c.is_ascii_digit());
            let number = &fields[digits.len()..];
            // A JSON number: digits, no leading zero, and at most a u64's twenty.
            if number.is_empty()
                || number.len() > 20
                || (number.len() > 1 && number.starts_with('0'))
            {
                return None;
            }
            digits.strip_suffix(SEQ)?.strip_suffix('"')?
        }
    };
    // The nonce is short: its end is found by a plain scan, not a substring search.
    let iv_len = fields.bytes().position(|b| b == b'"')?;
    let (iv, rest) = fields.split_at(iv_len);
    let ct = rest.strip_prefix(CT)?;
    (!iv.is_empty() && !ct.is_empty() && is_base64(iv) && is_base64(ct)).then_some(Sealed {
        data: RawJson(data),
        frame: RawJson(frame),
    })
}

/// The parts of a sealed record a door emits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sealed<'a> {
    /// `{"iv":..,"ct":..[,"seq":N]}`: what an IGNIS-path socket emits as `encrypted`.
    pub(super) data: RawJson<'a>,
    /// The whole frame: what a hardened socket emits as `sealwire`.
    pub(super) frame: RawJson<'a>,
}

/// Whether `s` is all base64 characters (standard alphabet, padding included). One pass
/// without an early exit, which the compiler turns into vector code.
fn is_base64(s: &str) -> bool {
    s.bytes().fold(true, |ok, b| {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        ok & (letter | digit | (b == b'+') | (b == b'/') | (b == b'='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Session;
    use serde_json::{Value, json};

    #[test]
    fn the_serializer_writes_raw_json_verbatim() {
        let text = r#"{"iv":"AAAA","ct":"BB+/=="}"#;
        let out = serde_json::to_string(&json_args(RawJson(text))).expect("serialize");
        assert_eq!(out, format!(r#"["encrypted",{text}]"#));
        // Exactly as a parsed RawValue serializes.
        let raw: Box<RawValue> = serde_json::from_str(text).expect("raw");
        let same = serde_json::to_string(&json_args(RawJson::from_raw(&raw))).expect("serialize");
        assert_eq!(out, same);
    }

    fn json_args(data: RawJson<'_>) -> (&'static str, RawJson<'_>) {
        ("encrypted", data)
    }

    #[test]
    fn sealed_records_of_both_profiles_are_recognized_and_stay_json() {
        let mut compat = Session::compat(&zeroize::Zeroizing::new([7u8; 32]));
        let frame = compat
            .seal_frame(br#"{"event":"a","data":1}"#)
            .expect("seal");
        let sealed = sealed_record(&frame).expect("a compatibility record");
        assert_eq!(sealed.frame.get(), frame);
        let parsed: Value = serde_json::from_str(&frame).expect("frame");
        let data: Value = serde_json::from_str(sealed.data.get()).expect("data is JSON");
        assert_eq!(data, parsed["data"]);
        for seq in [0u64, 7, 10, u64::MAX] {
            let hardened = format!(
                r#"{{"event":"encrypted","data":{{"iv":"AAAAAAAAAAAAAAAA","ct":"Zm9v","seq":{seq}}}}}"#
            );
            let sealed = sealed_record(&hardened).expect("a hardened record");
            let data: Value = serde_json::from_str(sealed.data.get()).expect("data is JSON");
            assert_eq!(data["seq"], json!(seq));
        }
    }

    #[test]
    fn the_base64_check_takes_exactly_the_alphabet() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"+/=".contains(&b);
            let text = [b'A', b, b'A'];
            let is = std::str::from_utf8(&text).is_ok_and(is_base64);
            assert_eq!(is, expected && b.is_ascii(), "byte {b:#04x}");
        }
    }

    #[test]
    fn anything_else_is_left_to_the_parser() {
        for frame in [
            r#"{"event":"a","data":{"iv":"AA","ct":"BB"}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"B\"B"}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"B\\B"}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"B B"}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":""}}"#,
            r#"{"event":"encrypted","data":{"iv":"","ct":"BB"}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"BB","seq":01}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"BB","seq":-1}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"BB","seq":}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"BB","seq":123456789012345678901}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"BB","x":1}}"#,
            r#"{"event":"encrypted","data":{"ct":"BB","iv":"AA"}}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"BB"}} "#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"BB"}"#,
            r#"{"event":"encrypted","data":{"iv":"AA","ct":"BB"#,
            r#"{"event":"encrypted","data":{"iv":"AAé","ct":"BB"}}"#,
            "",
        ] {
            assert!(sealed_record(frame).is_none(), "{frame}");
        }
    }
}
