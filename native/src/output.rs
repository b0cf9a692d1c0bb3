//! Python results of a decoded batch.

use crate::json::Val;
use crate::validate::{as_str, label};
use crate::Outcome;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyDict, PyFloat, PyList, PyString, PyTuple};
use std::collections::HashMap;

/// A fast hash for short strings (no DoS concern within one batch's tables).
pub type FnvMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// One Python str per distinct short string of a batch.
pub struct Strings<'py, 'e> {
    py: Python<'py>,
    cache: FnvMap<&'e str, Bound<'py, PyString>>,
}

impl<'py, 'e> Strings<'py, 'e> {
    pub fn new(py: Python<'py>) -> Self {
        Strings {
            py,
            cache: FnvMap::default(),
        }
    }
    pub fn get(&mut self, s: &'e str) -> Bound<'py, PyString> {
        if s.len() > 64 {
            return PyString::new(self.py, s);
        }
        self.cache
            .entry(s)
            .or_insert_with(|| PyString::new(self.py, s))
            .clone()
    }
}

pub fn f64_bytes<'py>(py: Python<'py>, values: &[f64]) -> Bound<'py, PyByteArray> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    PyByteArray::new(py, &bytes)
}

pub fn i64_bytes<'py>(py: Python<'py>, values: &[i64]) -> Bound<'py, PyByteArray> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    PyByteArray::new(py, &bytes)
}

pub fn scalar<'py, 'e>(
    py: Python<'py>,
    value: &'e Val,
    strings: &mut Strings<'py, 'e>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Val::Null => py.None().into_bound(py),
        Val::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Val::Int(v) => v.into_pyobject(py)?.into_any(),
        Val::UInt(v) => v.into_pyobject(py)?.into_any(),
        Val::Float(v) => PyFloat::new(py, *v).into_any(),
        Val::Str(s) => strings.get(s.as_ref()).into_any(),
        _ => py.None().into_bound(py),
    })
}

fn object<'py, 'e>(
    py: Python<'py>,
    value: Option<&'e Val>,
    strings: &mut Strings<'py, 'e>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    if let Some(Val::Obj(items)) = value {
        for (key, item) in items {
            dict.set_item(strings.get(key.as_ref()), scalar(py, item, strings)?)?;
        }
    }
    Ok(dict)
}

fn optional_str<'py, 'e>(
    py: Python<'py>,
    value: Option<&'e str>,
    strings: &mut Strings<'py, 'e>,
) -> Bound<'py, PyAny> {
    match value {
        Some(s) => strings.get(s).into_any(),
        None => py.None().into_bound(py),
    }
}

/// (index, timestamp_ms, model, model_version, segment, features, prediction_score,
/// prediction_label, latency_ms, event_id, refused): the arrays as little-endian bytes, the
/// rest as lists; refused is a list of (index, reason code, field or None).
pub fn rows<'py, 'e>(py: Python<'py>, outcomes: &'e [Outcome<'e>]) -> PyResult<Bound<'py, PyAny>> {
    let mut strings = Strings::new(py);
    let (mut index, mut timestamp, mut score, mut latency) = (vec![], vec![], vec![], vec![]);
    let models = PyList::empty(py);
    let versions = PyList::empty(py);
    let segments = PyList::empty(py);
    let features = PyList::empty(py);
    let labels = PyList::empty(py);
    let event_ids = PyList::empty(py);
    let refused = PyList::empty(py);
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Outcome::Accepted(event, row) => {
                index.push(i as i64);
                timestamp.push(row.timestamp);
                score.push(row.score);
                latency.push(row.latency);
                models.append(strings.get(as_str(event.model.as_ref().unwrap())))?;
                versions.append(strings.get(as_str(event.version.as_ref().unwrap())))?;
                segments.append(object(py, event.segment.as_ref(), &mut strings)?)?;
                features.append(object(py, event.features.as_ref(), &mut strings)?)?;
                labels.append(optional_str(py, label(event, row.label), &mut strings))?;
                let event_id = match &event.event_id {
                    Some(Val::Str(s)) => Some(s.as_ref()),
                    _ => None,
                };
                event_ids.append(match event_id {
                    Some(s) => PyString::new(py, s).into_any(),
                    None => py.None().into_bound(py),
                })?;
            }
            Outcome::Refused(reason, field) => {
                refused.append((i, *reason, field.as_deref()))?;
            }
        }
    }
    let parts: Vec<Bound<'py, PyAny>> = vec![
        i64_bytes(py, &index).into_any(),
        i64_bytes(py, &timestamp).into_any(),
        models.into_any(),
        versions.into_any(),
        segments.into_any(),
        features.into_any(),
        f64_bytes(py, &score).into_any(),
        labels.into_any(),
        f64_bytes(py, &latency).into_any(),
        event_ids.into_any(),
        refused.into_any(),
    ];
    Ok(PyTuple::new(py, parts)?.into_any())
}
