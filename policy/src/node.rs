//! A parsed TOML document as a tree in which every key and value keeps its
//! byte span, so validation can check types and unknown keys itself and point
//! at the exact spot of any mistake.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A value with the byte range it came from. toml only knows spans for what
/// is written out; implicit tables (`[a.b]` creates `a`) get the span of
/// their first key.
#[derive(Debug)]
pub(crate) struct Spanned<T> {
    span: Range<usize>,
    value: T,
}

impl<T> Spanned<T> {
    pub(crate) fn get_ref(&self) -> &T {
        &self.value
    }

    pub(crate) fn start(&self) -> usize {
        self.span.start
    }
}

/// Start of a spanned item.
pub(crate) fn start<T>(s: &Spanned<T>) -> usize {
    s.start()
}

/// One TOML value with spans on everything below it.
#[derive(Debug)]
pub(crate) enum Node {
    Str(String),
    Int(i64),
    Float,
    Bool,
    /// Dates and times carry no meaning in a policy; only the type matters.
    Datetime,
    Array(Vec<Spanned<Node>>),
    /// Keys in document order (TOML forbids duplicates).
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl Node {
    /// "a string", "an integer", ... for "found ..." in type errors.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Int(_) => "an integer",
            Node::Float => "a float",
            Node::Bool => "a boolean",
            Node::Datetime => "a date/time",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

// serde_spanned's protocol (stable within toml 0.8): asking for a struct with
// this name and these fields makes toml answer with a map of start, end and
// value when it knows the span, or with the plain value when it does not.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const START_FIELD: &str = "$__serde_spanned_private_start";
const END_FIELD: &str = "$__serde_spanned_private_end";
const VALUE_FIELD: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[START_FIELD, END_FIELD, VALUE_FIELD];
/// toml hands datetimes over as a one-key map with this key.
const DATETIME_KEY: &str = "$__toml_private_datetime";

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Bool)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Float)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        match map.next_key::<Key>()? {
            None => Ok(Node::Table(Vec::new())),
            Some(first) => table_or_datetime(first, map),
        }
    }
}

/// The rest of a map whose first key has been read.
fn table_or_datetime<'de, A: MapAccess<'de>>(first: Key, mut map: A) -> Result<Node, A::Error> {
    if matches!(&first, Key::Plain(k) if k == DATETIME_KEY) {
        map.next_value::<de::IgnoredAny>()?;
        return Ok(Node::Datetime);
    }
    let mut entries = Vec::new();
    let mut key = Some(first);
    while let Some(k) = key {
        let k = match k {
            Key::Spanned(k) => k,
            // A key toml knows no span for: place it at the previous one.
            Key::Plain(name) => Spanned {
                span: entries
                    .last()
                    .map_or(0..0, |(k, _): &(Spanned<String>, _)| k.span.clone()),
                value: name,
            },
        };
        entries.push((k, map.next_value::<Spanned<Node>>()?));
        key = map.next_key::<Key>()?;
    }
    Ok(Node::Table(entries))
}

impl<'de> Deserialize<'de> for Spanned<Node> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, SpannedNodeVisitor)
    }
}

struct SpannedNodeVisitor;

/// A value toml gave without a span (only implicit tables in practice).
fn unspanned<E>(r: Result<Node, E>) -> Result<Spanned<Node>, E> {
    r.map(|value| Spanned { span: 0..0, value })
}

impl<'de> Visitor<'de> for SpannedNodeVisitor {
    type Value = Spanned<Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        unspanned(NodeVisitor.visit_bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        unspanned(NodeVisitor.visit_i64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        unspanned(NodeVisitor.visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        unspanned(NodeVisitor.visit_f64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        unspanned(NodeVisitor.visit_str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        unspanned(NodeVisitor.visit_seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let first = match map.next_key::<Key>()? {
            None => return unspanned(Ok(Node::Table(Vec::new()))),
            Some(first) => first,
        };
        if !matches!(&first, Key::Plain(k) if k == START_FIELD) {
            // An implicit table: no span of its own; use its first key's.
            let span = match &first {
                Key::Spanned(k) => k.span.clone(),
                Key::Plain(_) => 0..0,
            };
            return table_or_datetime(first, map).map(|value| Spanned { span, value });
        }
        let start: usize = map.next_value()?;
        let end: usize = match map.next_key::<Key>()? {
            Some(Key::Plain(k)) if k == END_FIELD => map.next_value()?,
            _ => return Err(de::Error::custom("malformed span")),
        };
        match map.next_key::<Key>()? {
            Some(Key::Plain(k)) if k == VALUE_FIELD => Ok(Spanned {
                span: start..end,
                value: map.next_value::<Node>()?,
            }),
            _ => Err(de::Error::custom("malformed span")),
        }
    }
}

/// A table key, with its span when toml knows it.
enum Key {
    Spanned(Spanned<String>),
    Plain(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key::Plain(v.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let mut span = 0..0;
        let mut value = None;
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                START_FIELD => span.start = map.next_value()?,
                END_FIELD => span.end = map.next_value()?,
                VALUE_FIELD => value = Some(map.next_value::<String>()?),
                _ => return Err(de::Error::custom("malformed spanned key")),
            }
        }
        let value = value.ok_or_else(|| de::Error::custom("malformed spanned key"))?;
        Ok(Key::Spanned(Spanned { span, value }))
    }
}
