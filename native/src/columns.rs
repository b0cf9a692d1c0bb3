//! A decoded batch as columns: codes instead of strings, one dense matrix per feature table.
//!
//! Built without the GIL from the validated events; only the distinct strings become Python
//! objects (`to_python`).

use crate::json::Val;
use crate::output::{f64_bytes, i64_bytes, FnvMap};
use crate::validate::{as_str, label};
use crate::Outcome;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList, PyString, PyTuple};

pub const ABSENT: u8 = 0;
pub const NULL: u8 = 1;
pub const NUMBER: u8 = 2;
pub const STRING: u8 = 3;
pub const BOOL: u8 = 4;

/// Distinct strings in first-seen order, and their codes.
#[derive(Default)]
pub struct Table<'e> {
    codes: FnvMap<&'e str, i32>,
    pub names: Vec<&'e str>,
}

impl<'e> Table<'e> {
    pub fn code(&mut self, s: &'e str) -> i32 {
        let names = &mut self.names;
        *self.codes.entry(s).or_insert_with(|| {
            names.push(s);
            (names.len() - 1) as i32
        })
    }
}

pub struct Columns<'e> {
    pub index: Vec<i64>,
    pub timestamp: Vec<i64>,
    pub score: Vec<f64>,
    pub latency: Vec<f64>,
    pub model: Vec<i32>,
    pub models: Table<'e>,
    pub version: Vec<i32>,
    pub versions: Table<'e>,
    pub segment: Vec<i32>,
    pub segments: Vec<&'e [(std::borrow::Cow<'e, str>, Val<'e>)]>,
    pub label: Vec<i32>,
    pub labels: Table<'e>,
    pub event_id: Vec<u8>,
    pub event_id_ends: Vec<i64>,
    pub event_id_present: Vec<u8>,
    pub features: Table<'e>,
    /// per feature: kind, value, category code, rank in the row, each over the rows
    pub kind: Vec<Vec<u8>>,
    pub value: Vec<Vec<f64>>,
    pub code: Vec<Vec<i32>>,
    pub rank: Vec<Vec<i32>>,
    pub categories: Vec<Table<'e>>,
    pub refused: Vec<(usize, u8, Option<&'e str>)>,
}

static NO_ITEMS: [(std::borrow::Cow<'static, str>, Val<'static>); 0] = [];

/// Columns of the accepted events; None if the feature matrix would exceed `max_cells`.
pub fn build<'e>(outcomes: &'e [Outcome<'e>], max_cells: usize) -> Option<Columns<'e>> {
    let n = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Accepted(..)))
        .count();
    let mut c = Columns {
        index: Vec::with_capacity(n),
        timestamp: Vec::with_capacity(n),
        score: Vec::with_capacity(n),
        latency: Vec::with_capacity(n),
        model: Vec::with_capacity(n),
        models: Table::default(),
        version: Vec::with_capacity(n),
        versions: Table::default(),
        segment: Vec::with_capacity(n),
        segments: Vec::new(),
        label: Vec::with_capacity(n),
        labels: Table::default(),
        event_id: Vec::new(),
        event_id_ends: Vec::with_capacity(n),
        event_id_present: Vec::with_capacity(n),
        features: Table::default(),
        kind: Vec::new(),
        value: Vec::new(),
        code: Vec::new(),
        rank: Vec::new(),
        categories: Vec::new(),
        refused: Vec::new(),
    };
    // segments are grouped by their exact items (key order included), as a tuple of items
    let mut segment_codes: FnvMap<Vec<(&'e str, &'e str)>, i32> = FnvMap::default();
    // the feature at each position of the previous event: most events list the same names
    // in the same order, so a string compare usually replaces a hash lookup
    let mut hint: Vec<usize> = Vec::new();
    let mut row = 0usize;
    for (i, outcome) in outcomes.iter().enumerate() {
        let (event, r) = match outcome {
            Outcome::Accepted(event, r) => (event, r),
            Outcome::Refused(reason, field) => {
                c.refused.push((i, *reason, field.as_deref()));
                continue;
            }
        };
        c.index.push(i as i64);
        c.timestamp.push(r.timestamp);
        c.score.push(r.score);
        c.latency.push(r.latency);
        c.model
            .push(c.models.code(as_str(event.model.as_ref().unwrap())));
        c.version
            .push(c.versions.code(as_str(event.version.as_ref().unwrap())));
        let items: &'e [(std::borrow::Cow<'e, str>, Val<'e>)] = match &event.segment {
            Some(Val::Obj(items)) => items.as_slice(),
            _ => &NO_ITEMS,
        };
        let key: Vec<(&'e str, &'e str)> =
            items.iter().map(|(k, v)| (k.as_ref(), as_str(v))).collect();
        let next = segment_codes.len() as i32;
        let code = *segment_codes.entry(key).or_insert_with(|| {
            c.segments.push(items);
            next
        });
        c.segment.push(code);
        c.label
            .push(label(event, r.label).map_or(-1, |s| c.labels.code(s)));
        match &event.event_id {
            Some(Val::Str(s)) => {
                c.event_id.extend_from_slice(s.as_bytes());
                c.event_id_present.push(1);
            }
            _ => c.event_id_present.push(0),
        }
        c.event_id_ends.push(c.event_id.len() as i64);
        if let Some(Val::Obj(items)) = &event.features {
            for (rank, (name, value)) in items.iter().enumerate() {
                let name = name.as_ref();
                let f = match hint.get(rank) {
                    Some(&f) if c.features.names[f] == name => f,
                    _ => {
                        let f = c.features.code(name) as usize;
                        if rank < hint.len() {
                            hint[rank] = f;
                        } else {
                            hint.push(f);
                        }
                        f
                    }
                };
                if f == c.kind.len() {
                    if (f + 1) * n > max_cells {
                        return None;
                    }
                    c.kind.push(vec![ABSENT; n]);
                    c.value.push(vec![f64::NAN; n]);
                    c.code.push(vec![-1; n]);
                    c.rank.push(vec![-1; n]);
                    c.categories.push(Table::default());
                }
                c.rank[f][row] = rank as i32;
                let (kind, number, code) = match value {
                    Val::Null => (NULL, f64::NAN, -1),
                    Val::Bool(b) => (
                        BOOL,
                        f64::NAN,
                        c.categories[f].code(if *b { "true" } else { "false" }),
                    ),
                    Val::Str(s) => (STRING, f64::NAN, c.categories[f].code(s.as_ref())),
                    other => (
                        NUMBER,
                        crate::validate::number(other).unwrap_or(f64::NAN),
                        -1,
                    ),
                };
                c.kind[f][row] = kind;
                c.value[f][row] = number;
                c.code[f][row] = code;
            }
        }
        row += 1;
    }
    Some(c)
}

fn i32_bytes<'py>(py: Python<'py>, values: &[i32]) -> Bound<'py, PyByteArray> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    PyByteArray::new(py, &bytes)
}

fn names<'py>(py: Python<'py>, table: &Table) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, table.names.iter().map(|s| PyString::new(py, s)))
}

/// The columns as Python objects; see `driftwire.decode._native.decode_columns`.
pub fn to_python<'py>(py: Python<'py>, c: &Columns) -> PyResult<Bound<'py, PyAny>> {
    let segments = PyList::empty(py);
    for items in &c.segments {
        let pairs: Vec<Bound<'py, PyTuple>> = items
            .iter()
            .map(|(k, v)| PyTuple::new(py, [PyString::new(py, k), PyString::new(py, as_str(v))]))
            .collect::<PyResult<_>>()?;
        segments.append(PyTuple::new(py, pairs)?)?;
    }
    let flat_u8: Vec<u8> = c.kind.concat();
    let flat_f64: Vec<f64> = c.value.concat();
    let flat_code: Vec<i32> = c.code.concat();
    let flat_rank: Vec<i32> = c.rank.concat();
    let categories = PyList::empty(py);
    for table in &c.categories {
        categories.append(names(py, table)?)?;
    }
    let refused = PyList::empty(py);
    for (i, reason, field) in &c.refused {
        refused.append((*i, *reason, *field))?;
    }
    let parts: Vec<Bound<'py, PyAny>> = vec![
        i64_bytes(py, &c.index).into_any(),
        i64_bytes(py, &c.timestamp).into_any(),
        f64_bytes(py, &c.score).into_any(),
        f64_bytes(py, &c.latency).into_any(),
        i32_bytes(py, &c.model).into_any(),
        names(py, &c.models)?.into_any(),
        i32_bytes(py, &c.version).into_any(),
        names(py, &c.versions)?.into_any(),
        i32_bytes(py, &c.segment).into_any(),
        segments.into_any(),
        i32_bytes(py, &c.label).into_any(),
        names(py, &c.labels)?.into_any(),
        PyByteArray::new(py, &c.event_id).into_any(),
        i64_bytes(py, &c.event_id_ends).into_any(),
        PyByteArray::new(py, &c.event_id_present).into_any(),
        names(py, &c.features)?.into_any(),
        PyByteArray::new(py, &flat_u8).into_any(),
        f64_bytes(py, &flat_f64).into_any(),
        i32_bytes(py, &flat_code).into_any(),
        i32_bytes(py, &flat_rank).into_any(),
        categories.into_any(),
        refused.into_any(),
    ];
    Ok(PyTuple::new(py, parts)?.into_any())
}
