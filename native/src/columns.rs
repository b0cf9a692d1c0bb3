//! A decoded batch as columns: codes instead of strings, one dense matrix per feature table.
//!
//! Written event by event as the batch is parsed (`Builder::accept`), without the GIL; only
//! the distinct strings become Python objects (`to_python`).

use crate::json::{same, Event, Val};
use crate::output::FnvMap;
use crate::validate::Row;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList, PyString, PyTuple};
use std::borrow::Cow;

pub const ABSENT: u8 = 0;
pub const NULL: u8 = 1;
pub const NUMBER: u8 = 2;
pub const STRING: u8 = 3;
pub const BOOL: u8 = 4;

/// Distinct strings in first-seen order, and their codes.
pub struct Table<'e> {
    codes: FnvMap<Cow<'e, str>, i32>,
    pub names: Vec<Cow<'e, str>>,
    /// (`key`, code) of recently coded strings, at a slot picked by the key: most lookups
    /// are one compare, with no search and no hash of the whole string
    recent: [(u64, i32); RECENT],
}

/// Slots of `Table::recent` (a power of two).
const RECENT: usize = 64;

/// A key no string has: its length byte says 255 or more and its first bytes are 0xff,
/// which UTF-8 never holds.
const NO_KEY: u64 = u64::MAX;

impl Default for Table<'_> {
    fn default() -> Self {
        Table {
            codes: FnvMap::default(),
            names: Vec::new(),
            recent: [(NO_KEY, 0); RECENT],
        }
    }
}

/// A string's length (top byte, saturated) and its first seven bytes: equal keys mean equal
/// strings when both are shorter than eight bytes.
#[inline(always)]
pub fn key(b: &[u8]) -> u64 {
    let n = b.len();
    let head = if n >= 8 {
        u64::from_le_bytes(b[..8].try_into().unwrap()) & 0x00ff_ffff_ffff_ffff
    } else if n >= 4 {
        let lo = u64::from(u32::from_le_bytes(b[..4].try_into().unwrap()));
        let hi = u64::from(u32::from_le_bytes(b[n - 4..].try_into().unwrap()));
        lo | (hi << ((n - 4) * 8))
    } else if n > 0 {
        // one to three bytes: the first, middle and last cover them all
        u64::from(b[0])
            | (u64::from(b[n / 2]) << (n / 2 * 8))
            | (u64::from(b[n - 1]) << ((n - 1) * 8))
    } else {
        0
    };
    head | ((n.min(255) as u64) << 56)
}

impl<'e> Table<'e> {
    #[inline]
    #[allow(clippy::ptr_arg)] // the Cow itself is kept when the string is new
    pub fn code(&mut self, s: &Cow<'e, str>) -> i32 {
        let bytes = s.as_bytes();
        let k = key(bytes);
        let slot = (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % RECENT;
        let (seen, code) = self.recent[slot];
        if seen == k && (bytes.len() < 8 || same(self.names[code as usize].as_bytes(), bytes)) {
            return code;
        }
        let code = self.find(s);
        self.recent[slot] = (k, code);
        code
    }

    #[cold]
    #[allow(clippy::ptr_arg)]
    fn find(&mut self, s: &Cow<'e, str>) -> i32 {
        if let Some(&code) = self.codes.get(s.as_ref()) {
            return code;
        }
        let code = self.names.len() as i32;
        self.names.push(s.clone());
        self.codes.insert(s.clone(), code);
        code
    }
}

/// Equal bytes; the same slice (a key read in place of an earlier one) without a compare.
#[inline(always)]
fn same_text(a: &[u8], b: &[u8]) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || same(a, b)
}

const FALSE: Cow<'static, str> = Cow::Borrowed("false");
const TRUE: Cow<'static, str> = Cow::Borrowed("true");

/// One feature's column over the batch's value slots (truncated to the accepted rows).
struct Feature<'e> {
    kind: Vec<u8>,
    value: Vec<f64>,
    code: Vec<i32>,
    rank: Vec<i32>,
    categories: Table<'e>,
}

/// A feature's numeric buffers, kept from batch to batch on each thread: fresh ones cost a
/// page fault per 4 KiB every batch once the allocator has returned them to the system.
struct Buffers {
    kind: Vec<u8>,
    value: Vec<f64>,
    code: Vec<i32>,
    rank: Vec<i32>,
}

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Buffers>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Spare buffers kept per thread (enough for this many features; at most 64 x 8,192 slots x
/// 17 bytes = 8.5 MiB).
const MAX_SPARE: usize = 64;

impl Feature<'_> {
    fn new(n: usize) -> Self {
        let spare = SPARE.with(|spare| spare.borrow_mut().pop());
        let Buffers {
            mut kind,
            mut value,
            mut code,
            mut rank,
        } = spare.unwrap_or(Buffers {
            kind: Vec::new(),
            value: Vec::new(),
            code: Vec::new(),
            rank: Vec::new(),
        });
        kind.clear();
        kind.resize(n, ABSENT);
        value.clear();
        value.resize(n, f64::NAN);
        code.clear();
        code.resize(n, -1);
        rank.clear();
        rank.resize(n, -1);
        Feature {
            kind,
            value,
            code,
            rank,
            categories: Table::default(),
        }
    }
}

impl Drop for Feature<'_> {
    fn drop(&mut self) {
        let buffers = Buffers {
            kind: std::mem::take(&mut self.kind),
            value: std::mem::take(&mut self.value),
            code: std::mem::take(&mut self.code),
            rank: std::mem::take(&mut self.rank),
        };
        // the largest batches' buffers are not kept
        if buffers.value.capacity() <= 1 << 13 {
            let _ = SPARE.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < MAX_SPARE {
                    spare.push(buffers);
                }
            });
        }
    }
}

type SegmentItems<'e> = Vec<(Cow<'e, str>, Cow<'e, str>)>;

pub struct Builder<'e> {
    /// rows a column can hold: the batch's value count
    slots: usize,
    max_cells: usize,
    rows: usize,
    index: Vec<i64>,
    timestamp: Vec<i64>,
    score: Vec<f64>,
    latency: Vec<f64>,
    model: Vec<i32>,
    models: Table<'e>,
    version: Vec<i32>,
    versions: Table<'e>,
    segment: Vec<i32>,
    segments: Vec<SegmentItems<'e>>,
    /// segment codes by the segment's raw bytes, then by its items (key order included)
    segment_by_raw: FnvMap<&'e [u8], i32>,
    segment_by_items: FnvMap<SegmentItems<'e>, i32>,
    label: Vec<i32>,
    labels: Table<'e>,
    event_id: Vec<u8>,
    event_id_ends: Vec<i64>,
    event_id_present: Vec<u8>,
    features: Table<'e>,
    columns: Vec<Feature<'e>>,
    /// the feature at each position of the previous event: most events list the same names
    /// in the same order, so a string compare usually replaces a hash lookup
    hint: Vec<usize>,
    refused: Vec<(usize, u8, Option<String>)>,
    /// the feature matrix would exceed `max_cells`: the caller decodes the batch into rows
    pub overflow: bool,
}

fn str_of<'v, 'e>(value: &'v Val<'e>) -> &'v Cow<'e, str> {
    const EMPTY: &Cow<'static, str> = &Cow::Borrowed("");
    match value {
        Val::Str(s) => s,
        _ => EMPTY,
    }
}

/// The label of an accepted event, by `Row::label` (see `validate::label`).
fn label<'v, 'e>(event: &'v Event<'e>, code: u8) -> Option<&'v Cow<'e, str>> {
    match code {
        1 => Some(&FALSE),
        2 => Some(&TRUE),
        3 => match &event.prediction {
            Some(Val::Str(s)) => Some(s),
            _ => None,
        },
        4 => match event.prediction.as_ref().and_then(|p| p.get("label")) {
            Some(Val::Str(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

impl<'e> Builder<'e> {
    pub fn new(slots: usize, max_cells: usize) -> Self {
        Builder {
            slots,
            max_cells,
            rows: 0,
            index: Vec::with_capacity(slots),
            timestamp: Vec::with_capacity(slots),
            score: Vec::with_capacity(slots),
            latency: Vec::with_capacity(slots),
            model: Vec::with_capacity(slots),
            models: Table::default(),
            version: Vec::with_capacity(slots),
            versions: Table::default(),
            segment: Vec::with_capacity(slots),
            segments: Vec::new(),
            segment_by_raw: FnvMap::default(),
            segment_by_items: FnvMap::default(),
            label: Vec::with_capacity(slots),
            labels: Table::default(),
            event_id: Vec::new(),
            event_id_ends: Vec::with_capacity(slots),
            event_id_present: Vec::with_capacity(slots),
            features: Table::default(),
            columns: Vec::new(),
            hint: Vec::new(),
            refused: Vec::new(),
            overflow: false,
        }
    }

    pub fn refuse(&mut self, index: usize, reason: u8, field: Option<String>) {
        self.refused.push((index, reason, field));
    }

    fn segment_code(&mut self, event: &Event<'e>) -> i32 {
        if let Some(&code) = self.segment_by_raw.get(event.segment_raw) {
            return code;
        }
        let items: SegmentItems<'e> = match &event.segment {
            Some(Val::Obj(items)) => items
                .iter()
                .map(|(k, v)| (k.clone(), str_of(v).clone()))
                .collect(),
            _ => Vec::new(),
        };
        let next = self.segments.len() as i32;
        let code = *self.segment_by_items.entry(items).or_insert(next);
        if code == next {
            let items = match &event.segment {
                Some(Val::Obj(items)) => items
                    .iter()
                    .map(|(k, v)| (k.clone(), str_of(v).clone()))
                    .collect(),
                _ => Vec::new(),
            };
            self.segments.push(items);
        }
        self.segment_by_raw.insert(event.segment_raw, code);
        code
    }

    /// Write one accepted event (validated into `r`) as the next row.
    pub fn accept(&mut self, index: usize, event: &Event<'e>, r: &Row) {
        if self.overflow {
            return;
        }
        let row = self.rows;
        self.index.push(index as i64);
        self.timestamp.push(r.timestamp);
        self.score.push(r.score);
        self.latency.push(r.latency);
        let model = self.models.code(str_of(event.model.as_ref().unwrap()));
        self.model.push(model);
        let version = self.versions.code(str_of(event.version.as_ref().unwrap()));
        self.version.push(version);
        let segment = self.segment_code(event);
        self.segment.push(segment);
        let label = label(event, r.label).map_or(-1, |s| self.labels.code(s));
        self.label.push(label);
        match &event.event_id {
            Some(Val::Str(s)) => {
                self.event_id.extend_from_slice(s.as_bytes());
                self.event_id_present.push(1);
            }
            _ => self.event_id_present.push(0),
        }
        self.event_id_ends.push(self.event_id.len() as i64);
        if let Some(Val::Obj(items)) = &event.features {
            for (rank, (name, value)) in items.iter().enumerate() {
                let f = match self.hint.get(rank) {
                    Some(&f) if same_text(self.features.names[f].as_bytes(), name.as_bytes()) => f,
                    _ => {
                        let f = self.features.code(name) as usize;
                        if rank < self.hint.len() {
                            self.hint[rank] = f;
                        } else {
                            self.hint.push(f);
                        }
                        f
                    }
                };
                if f == self.columns.len() {
                    if (f + 1) * self.slots > self.max_cells {
                        self.overflow = true;
                        return;
                    }
                    self.columns.push(Feature::new(self.slots));
                }
                let column = &mut self.columns[f];
                column.rank[row] = rank as i32;
                let (kind, number, code) = match value {
                    Val::Null => (NULL, f64::NAN, -1),
                    Val::Bool(b) => (
                        BOOL,
                        f64::NAN,
                        column.categories.code(if *b { &TRUE } else { &FALSE }),
                    ),
                    Val::Str(s) => (STRING, f64::NAN, column.categories.code(s)),
                    other => (
                        NUMBER,
                        crate::validate::number(other).unwrap_or(f64::NAN),
                        -1,
                    ),
                };
                column.kind[row] = kind;
                column.value[row] = number;
                column.code[row] = code;
            }
        }
        self.rows += 1;
    }
}

/// A bytearray of the values' little-endian bytes, the parts one after the other.
fn le_bytes<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    parts: &[&[T]],
    to_bytes: fn(T) -> [u8; N],
) -> PyResult<Bound<'py, PyByteArray>> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() * N;
    PyByteArray::new_with(py, len, |buffer| {
        let mut chunks = buffer.chunks_exact_mut(N);
        for part in parts {
            // the part first: zip then stops without taking a chunk past its end
            for (&value, chunk) in part.iter().zip(&mut chunks) {
                chunk.copy_from_slice(&to_bytes(value));
            }
        }
        Ok(())
    })
}

fn names<'py>(py: Python<'py>, table: &Table) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, table.names.iter().map(|s| PyString::new(py, s)))
}

/// The columns as Python objects; see `driftwire.decode._native.decode_columns`.
pub fn to_python<'py>(py: Python<'py>, c: &Builder) -> PyResult<Bound<'py, PyAny>> {
    let n = c.rows;
    let segments = PyList::empty(py);
    for items in &c.segments {
        let pairs: Vec<Bound<'py, PyTuple>> = items
            .iter()
            .map(|(k, v)| PyTuple::new(py, [PyString::new(py, k), PyString::new(py, v)]))
            .collect::<PyResult<_>>()?;
        segments.append(PyTuple::new(py, pairs)?)?;
    }
    let kinds: Vec<&[u8]> = c.columns.iter().map(|f| &f.kind[..n]).collect();
    let values: Vec<&[f64]> = c.columns.iter().map(|f| &f.value[..n]).collect();
    let codes: Vec<&[i32]> = c.columns.iter().map(|f| &f.code[..n]).collect();
    let ranks: Vec<&[i32]> = c.columns.iter().map(|f| &f.rank[..n]).collect();
    let categories = PyList::empty(py);
    for column in &c.columns {
        categories.append(names(py, &column.categories)?)?;
    }
    let refused = PyList::empty(py);
    for (i, reason, field) in &c.refused {
        refused.append((*i, *reason, field.as_deref()))?;
    }
    let i64s = |v: &[i64]| le_bytes(py, &[v], i64::to_le_bytes);
    let i32s = |v: &[i32]| le_bytes(py, &[v], i32::to_le_bytes);
    let f64s = |v: &[f64]| le_bytes(py, &[v], f64::to_le_bytes);
    let parts: Vec<Bound<'py, PyAny>> = vec![
        i64s(&c.index)?.into_any(),
        i64s(&c.timestamp)?.into_any(),
        f64s(&c.score)?.into_any(),
        f64s(&c.latency)?.into_any(),
        i32s(&c.model)?.into_any(),
        names(py, &c.models)?.into_any(),
        i32s(&c.version)?.into_any(),
        names(py, &c.versions)?.into_any(),
        i32s(&c.segment)?.into_any(),
        segments.into_any(),
        i32s(&c.label)?.into_any(),
        names(py, &c.labels)?.into_any(),
        PyByteArray::new(py, &c.event_id).into_any(),
        i64s(&c.event_id_ends)?.into_any(),
        PyByteArray::new(py, &c.event_id_present).into_any(),
        names(py, &c.features)?.into_any(),
        le_bytes(py, &kinds, |v: u8| [v])?.into_any(),
        le_bytes(py, &values, f64::to_le_bytes)?.into_any(),
        le_bytes(py, &codes, i32::to_le_bytes)?.into_any(),
        le_bytes(py, &ranks, i32::to_le_bytes)?.into_any(),
        categories.into_any(),
        refused.into_any(),
    ];
    Ok(PyTuple::new(py, parts)?.into_any())
}
