//! The per-event rules of `driftwire.decode._event._validate`, in the same order, giving the
//! same reason code and field path for the first problem.

use crate::json::{Event, Val};
use crate::timestamp::iso_ms;
use std::borrow::Cow;

pub const EMPTY: u8 = 0;
pub const OVERSIZED: u8 = 1;
pub const NOT_JSON: u8 = 2;
pub const NOT_OBJECT: u8 = 3;
pub const MISSING_FIELD: u8 = 4;
pub const WRONG_TYPE: u8 = 5;
pub const TOO_LONG: u8 = 6;
pub const NEGATIVE_LATENCY: u8 = 8;
pub const BAD_TIMESTAMP: u8 = 9;
pub const TOO_MANY_FEATURES: u8 = 10;
pub const TOO_MANY_SEGMENT_KEYS: u8 = 11;

pub const MAX_EPOCH_MS: f64 = 9_007_199_254_740_992.0;

#[derive(Clone, Copy)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_features: usize,
    pub max_segment_keys: usize,
    pub max_string_length: usize,
}

pub struct Bad {
    pub reason: u8,
    pub field: Option<String>,
}

fn bad<T>(reason: u8, field: &str) -> Result<T, Bad> {
    Err(Bad {
        reason,
        field: Some(field.to_owned()),
    })
}

/// Characters (code points) of a str, as Python's len().
#[inline]
pub fn chars(s: &str) -> usize {
    s.bytes().filter(|&b| (b as i8) >= -0x40).count()
}

#[inline]
fn longer_than(s: &str, limit: usize) -> bool {
    s.len() > limit && chars(s) > limit
}

/// `prefix.key`, the key cut to 64 characters (then "...").
pub fn path(prefix: &str, key: &str) -> String {
    if key.len() <= 64 || chars(key) <= 64 {
        return format!("{prefix}.{key}");
    }
    let cut: String = key.chars().take(64).collect();
    format!("{prefix}.{cut}...")
}

/// What validation computes for an accepted event; strings are read from the event itself.
pub struct Row {
    pub timestamp: i64,
    pub score: f64,
    /// 0: no label, 1: "false", 2: "true", 3: the prediction string, 4: prediction.label
    pub label: u8,
    pub latency: f64,
}

fn required<'v, 'a>(value: &'v Option<Val<'a>>, name: &str) -> Result<&'v Val<'a>, Bad> {
    match value {
        None | Some(Val::Null) => bad(MISSING_FIELD, name),
        Some(v) => Ok(v),
    }
}

fn name(value: &Val, field: &str, limit: usize) -> Result<(), Bad> {
    match value {
        Val::Str(s) if s.is_empty() => bad(MISSING_FIELD, field),
        Val::Str(s) if longer_than(s, limit) => bad(TOO_LONG, field),
        Val::Str(_) => Ok(()),
        _ => bad(WRONG_TYPE, field),
    }
}

#[inline]
pub fn number(value: &Val) -> Option<f64> {
    match value {
        Val::Int(v) => Some(*v as f64),
        Val::UInt(v) => Some(*v as f64),
        Val::Float(v) => Some(*v),
        _ => None,
    }
}

fn timestamp(value: &Val) -> Result<i64, Bad> {
    match value {
        Val::Str(s) => iso_ms(s).map_or_else(|| bad(BAD_TIMESTAMP, "timestamp"), Ok),
        Val::Int(v) if (0..1i64 << 53).contains(v) => Ok(*v),
        Val::UInt(v) if *v < 1u64 << 53 => Ok(*v as i64),
        Val::Float(v) if (0.0..MAX_EPOCH_MS).contains(v) => Ok(v.trunc() as i64),
        Val::Int(_) | Val::UInt(_) | Val::Float(_) => bad(BAD_TIMESTAMP, "timestamp"),
        _ => bad(WRONG_TYPE, "timestamp"),
    }
}

fn prediction(value: &Val, limit: usize) -> Result<(f64, u8), Bad> {
    match value {
        Val::Bool(b) => Ok((f64::NAN, if *b { 2 } else { 1 })),
        Val::Str(s) if longer_than(s, limit) => bad(TOO_LONG, "prediction"),
        Val::Str(_) => Ok((f64::NAN, 3)),
        Val::Obj(_) => {
            let score = value.get("score").filter(|v| !matches!(v, Val::Null));
            let label = value.get("label").filter(|v| !matches!(v, Val::Null));
            if score.is_none() && label.is_none() {
                return bad(MISSING_FIELD, "prediction");
            }
            let number = match score {
                None => f64::NAN,
                Some(v) => number(v).map_or_else(|| bad(WRONG_TYPE, "prediction.score"), Ok)?,
            };
            match label {
                None => Ok((number, 0)),
                Some(Val::Str(s)) if longer_than(s, limit) => bad(TOO_LONG, "prediction.label"),
                Some(Val::Str(_)) => Ok((number, 4)),
                Some(_) => bad(WRONG_TYPE, "prediction.label"),
            }
        }
        other => number(other)
            .map(|n| (n, 0))
            .map_or_else(|| bad(WRONG_TYPE, "prediction"), Ok),
    }
}

fn features(value: &Val, limits: &Limits) -> Result<(), Bad> {
    let Val::Obj(items) = value else {
        return bad(WRONG_TYPE, "features");
    };
    if items.len() > limits.max_features {
        return bad(TOO_MANY_FEATURES, "features");
    }
    let limit = limits.max_string_length;
    for (key, item) in items {
        if longer_than(key, limit) {
            return bad(TOO_LONG, &path("features", key));
        }
        match item {
            Val::Str(s) if longer_than(s, limit) => return bad(TOO_LONG, &path("features", key)),
            Val::Object | Val::Array | Val::Obj(_) => {
                return bad(WRONG_TYPE, &path("features", key))
            }
            _ => {}
        }
    }
    Ok(())
}

fn segment(value: Option<&Val>, limits: &Limits) -> Result<(), Bad> {
    let items = match value {
        None | Some(Val::Null) => return Ok(()),
        Some(Val::Obj(items)) => items,
        Some(_) => return bad(WRONG_TYPE, "segment"),
    };
    if items.len() > limits.max_segment_keys {
        return bad(TOO_MANY_SEGMENT_KEYS, "segment");
    }
    let limit = limits.max_string_length;
    for (key, item) in items {
        if longer_than(key, limit) {
            return bad(TOO_LONG, &path("segment", key));
        }
        match item {
            Val::Str(s) if longer_than(s, limit) => return bad(TOO_LONG, &path("segment", key)),
            Val::Str(_) => {}
            _ => return bad(WRONG_TYPE, &path("segment", key)),
        }
    }
    Ok(())
}

/// Check one event in the documented order; the first problem is returned.
pub fn validate(event: &Event, limits: &Limits) -> Result<Row, Bad> {
    let limit = limits.max_string_length;
    name(required(&event.model, "model")?, "model", limit)?;
    name(
        required(&event.version, "model_version")?,
        "model_version",
        limit,
    )?;
    let timestamp = timestamp(required(&event.timestamp, "timestamp")?)?;
    let latency = number(required(&event.latency, "latency_ms")?)
        .map_or_else(|| bad(WRONG_TYPE, "latency_ms"), Ok)?;
    if latency < 0.0 {
        return bad(NEGATIVE_LATENCY, "latency_ms");
    }
    let (score, label) = prediction(required(&event.prediction, "prediction")?, limit)?;
    features(required(&event.features, "features")?, limits)?;
    segment(event.segment.as_ref(), limits)?;
    match &event.event_id {
        None | Some(Val::Null) => {}
        Some(Val::Str(s)) if longer_than(s, limit) => return bad(TOO_LONG, "event_id"),
        Some(Val::Str(_)) => {}
        Some(_) => return bad(WRONG_TYPE, "event_id"),
    }
    Ok(Row {
        timestamp,
        score,
        label,
        latency,
    })
}

/// The label string of an accepted event, by `Row::label`.
pub fn label<'e>(event: &'e Event, code: u8) -> Option<&'e str> {
    match code {
        1 => Some("false"),
        2 => Some("true"),
        3 => match &event.prediction {
            Some(Val::Str(s)) => Some(s.as_ref()),
            _ => None,
        },
        4 => match event.prediction.as_ref().and_then(|p| p.get("label")) {
            Some(Val::Str(s)) => Some(s.as_ref()),
            _ => None,
        },
        _ => None,
    }
}

pub fn as_str<'e>(value: &'e Val) -> &'e str {
    match value {
        Val::Str(Cow::Borrowed(s)) => s,
        Val::Str(Cow::Owned(s)) => s.as_str(),
        _ => "",
    }
}
