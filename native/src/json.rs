//! Strict JSON (as orjson reads it) into a shallow value tree borrowed from the input.
//!
//! Objects are kept down to `keep` levels (the event, then `features`, `segment` and
//! `prediction`); deeper containers are parsed, depth-checked and reduced to a marker.
//! Duplicate keys behave as in a Python dict: the first position, the last value.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// orjson refuses documents nested deeper than this many containers.
pub const MAX_DEPTH: usize = 1024;

#[derive(Debug)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Obj(Vec<(Cow<'a, str>, Val<'a>)>),
    /// An object below the kept levels.
    Object,
    Array,
}

impl<'a> Val<'a> {
    pub fn get(&self, key: &str) -> Option<&Val<'a>> {
        match self {
            Val::Obj(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn dedup<T>(items: &mut Vec<(Cow<'_, str>, T)>) {
    let n = items.len();
    if n < 2 {
        return;
    }
    let duplicated = if n <= 16 {
        (1..n).any(|i| items[..i].iter().any(|(k, _)| *k == items[i].0))
    } else {
        let mut seen = std::collections::HashSet::with_capacity(n);
        !items.iter().all(|(k, _)| seen.insert(k.as_ref()))
    };
    if !duplicated {
        return;
    }
    let mut out: Vec<(Cow<'_, str>, T)> = Vec::with_capacity(n);
    for (key, value) in items.drain(..) {
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => out.push((key, value)),
        }
    }
    *items = out;
}

struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value at `depth` containers deep; objects are kept while `keep` > 0.
#[derive(Clone, Copy)]
pub struct ValSeed {
    pub depth: usize,
    pub keep: u8,
}

impl ValSeed {
    fn child(self) -> ValSeed {
        ValSeed {
            depth: self.depth + 1,
            keep: self.keep.saturating_sub(1),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValSeed {
    type Value = Val<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValSeed {
    type Value = Val<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val<'de>, E> {
        Ok(Val::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(Val::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<'de>, E> {
        if v == 0.0 && v.is_sign_negative() {
            NEGATIVE_ZERO.with(|seen| seen.set(true));
        }
        Ok(Val::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(de::Error::custom("depth limit exceeded"));
        }
        let child = ValSeed {
            depth: self.depth + 1,
            keep: 0,
        };
        while seq.next_element_seed(child)?.is_some() {}
        Ok(Val::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(de::Error::custom("depth limit exceeded"));
        }
        let child = self.child();
        if self.keep == 0 {
            while map.next_key::<Key>()?.is_some() {
                map.next_value_seed(child)?;
            }
            return Ok(Val::Object);
        }
        let mut items = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Key(key)) = map.next_key()? {
            let value = map.next_value_seed(child)?;
            items.push((key, value));
        }
        dedup(&mut items);
        Ok(Val::Obj(items))
    }
}

/// The fields of one event that the decoder reads; `None` where absent.
#[derive(Default)]
pub struct Event<'a> {
    pub model: Option<Val<'a>>,
    pub version: Option<Val<'a>>,
    pub timestamp: Option<Val<'a>>,
    pub latency: Option<Val<'a>>,
    pub prediction: Option<Val<'a>>,
    pub features: Option<Val<'a>>,
    pub segment: Option<Val<'a>>,
    pub event_id: Option<Val<'a>>,
}

pub enum Doc<'a> {
    Event(Event<'a>),
    NotObject,
}

struct DocSeed;

impl<'de> DeserializeSeed<'de> for DocSeed {
    type Value = Doc<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Doc<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocSeed {
    type Value = Doc<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON document")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::NotObject)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::NotObject)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::NotObject)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::NotObject)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Doc<'de>, E> {
        Ok(Doc::NotObject)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::NotObject)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Doc<'de>, A::Error> {
        ValSeed { depth: 0, keep: 0 }.visit_seq(seq)?;
        Ok(Doc::NotObject)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let scalar = ValSeed { depth: 1, keep: 0 };
        let object = ValSeed { depth: 1, keep: 1 };
        let mut event = Event::default();
        while let Some(Key(key)) = map.next_key()? {
            let slot = match key.as_ref() {
                "model" => &mut event.model,
                "model_version" => &mut event.version,
                "timestamp" => &mut event.timestamp,
                "latency_ms" => &mut event.latency,
                "event_id" => &mut event.event_id,
                "prediction" => {
                    event.prediction = Some(map.next_value_seed(object)?);
                    continue;
                }
                "features" => {
                    event.features = Some(map.next_value_seed(object)?);
                    continue;
                }
                "segment" => {
                    event.segment = Some(map.next_value_seed(object)?);
                    continue;
                }
                _ => {
                    map.next_value_seed(scalar)?;
                    continue;
                }
            };
            *slot = Some(map.next_value_seed(scalar)?);
        }
        Ok(Doc::Event(event))
    }
}

thread_local! {
    /// Set when a value parsed as -0.0 (the literal may have been the integer `-0`).
    static NEGATIVE_ZERO: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the last `parse` on this thread met a number that reads as -0.0.
pub fn saw_negative_zero() -> bool {
    NEGATIVE_ZERO.with(|seen| seen.get())
}

/// Parse one value as orjson would; `None` if orjson refuses it.
pub fn parse(raw: &[u8]) -> Option<Doc<'_>> {
    NEGATIVE_ZERO.with(|seen| seen.set(false));
    // Invalid UTF-8 outside strings is a syntax error, and every string (keys included) goes
    // through the slice reader's parse_str, which checks it: orjson refuses the same values.
    let mut de = serde_json::Deserializer::from_slice(raw);
    de.disable_recursion_limit();
    let doc = DocSeed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(doc)
}
