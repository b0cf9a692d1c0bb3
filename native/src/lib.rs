//! driftwire's compiled decoder: one batch of raw Kafka values in, validated columns out.
//!
//! The rules are those of `driftwire.decode.decoder` (the pure-Python reference, which stays
//! the fallback): the same accepted rows, values, reason codes and field paths. Parsing and
//! validation run without the GIL; only building the Python results holds it.

mod columns;
mod json;
mod output;
mod records;
mod timestamp;
mod validate;

use pyo3::prelude::*;
use pyo3::types::PyList;

use json::{parse, Doc, Event, Pool};
use validate::{validate, Limits, Row, EMPTY, NOT_JSON, NOT_OBJECT, OVERSIZED};

#[allow(clippy::large_enum_variant)] // the rows path only; refused values are few
pub enum Outcome<'a> {
    Accepted(Event<'a>, Row),
    Refused(u8, Option<String>),
}

/// Decode one value into `event` (empty on entry); the validated row, or why it is refused.
fn decode_one<'a>(
    raw: Option<&'a [u8]>,
    limits: &Limits,
    event: &mut Event<'a>,
    pool: &mut Pool<'a>,
) -> Result<Row, (u8, Option<String>)> {
    let raw = match raw {
        None => return Err((EMPTY, None)),
        Some([]) => return Err((EMPTY, None)),
        Some(r) if r.len() > limits.max_event_bytes => return Err((OVERSIZED, None)),
        Some(r) => r,
    };
    match parse(raw, event, pool) {
        None => Err((NOT_JSON, None)),
        Some(Doc::NotObject) => Err((NOT_OBJECT, None)),
        Some(Doc::Event) => validate(event, limits).map_err(|bad| (bad.reason, bad.field)),
    }
}

/// The raw values of a list (None: a tombstone); None if one is neither bytes nor None.
fn raw_values<'py>(values: &Bound<'py, PyList>) -> Option<Vec<Option<&'py [u8]>>> {
    use pyo3::ffi;
    let n = values.len();
    let list = values.as_ptr();
    let mut raws = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: the GIL is held and `i` is below the list's length, so the items are
        // valid borrowed references; the list holds a reference to every bytes object
        // (immutable) for the whole call, and it is not handed to Python code meanwhile.
        unsafe {
            if i + 8 < n {
                // the object header of a later item, read below when its turn comes
                prefetch(std::slice::from_raw_parts(
                    ffi::PyList_GetItem(list, (i + 8) as ffi::Py_ssize_t).cast::<u8>(),
                    1,
                ));
            }
            let item = ffi::PyList_GetItem(list, i as ffi::Py_ssize_t);
            if item.is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            if item == ffi::Py_None() {
                raws.push(None);
            } else if ffi::PyBytes_Check(item) != 0 {
                let data = ffi::PyBytes_AsString(item).cast::<u8>();
                let len = ffi::PyBytes_Size(item) as usize;
                let slice: &'py [u8] = std::slice::from_raw_parts(data, len);
                raws.push(Some(slice));
            } else {
                return None;
            }
        }
    }
    Some(raws)
}

fn decode_all<'a>(py: Python<'_>, raws: &[Option<&'a [u8]>], limits: Limits) -> Vec<Outcome<'a>> {
    py.detach(|| {
        let mut pool = Pool::default();
        raws.iter()
            .map(|raw| {
                let mut event = Event::default();
                match decode_one(*raw, &limits, &mut event, &mut pool) {
                    Ok(row) => Outcome::Accepted(event, row),
                    Err((reason, field)) => Outcome::Refused(reason, field),
                }
            })
            .collect()
    })
}

/// Values ahead of the one being decoded whose bytes are fetched into the cache meanwhile.
const PREFETCH_AHEAD: usize = 8;

/// Bytes of each value fetched ahead (the hardware follows on from there).
const PREFETCH_BYTES: usize = 1024;

/// Ask for the first KiB of `raw` in the cache (a hint: no effect on results).
#[inline(always)]
fn prefetch(raw: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let n = raw.len().min(PREFETCH_BYTES);
        let mut at = 0;
        while at < n {
            // SAFETY: a prefetch of an address inside the slice; it never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(raw.as_ptr().add(at).cast()) };
            at += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = raw;
}

/// Decode and write the columns in one pass; None if the feature matrix would overflow.
fn build_columns<'a>(
    raws: &[Option<&'a [u8]>],
    limits: Limits,
    max_cells: usize,
) -> Option<columns::Builder<'a>> {
    let mut builder = columns::Builder::new(raws.len(), max_cells);
    let mut pool = Pool::default();
    let mut event = Event::default();
    for (i, raw) in raws.iter().enumerate() {
        if let Some(Some(ahead)) = raws.get(i + PREFETCH_AHEAD) {
            prefetch(ahead);
        }
        event.recycle(&mut pool);
        match decode_one(*raw, &limits, &mut event, &mut pool) {
            Ok(row) => builder.accept(i, &event, &row),
            Err((reason, field)) => builder.refuse(i, reason, field),
        }
        if builder.overflow {
            return None;
        }
    }
    Some(builder)
}

/// Decode a batch into the parts of a `DecodedBatch` (see `driftwire.decode._native`).
///
/// Returns None if a value is neither bytes nor None (the caller then takes the pure path).
#[pyfunction]
#[pyo3(signature = (values, max_event_bytes, max_features, max_segment_keys, max_string_length))]
fn decode_rows<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    max_event_bytes: usize,
    max_features: usize,
    max_segment_keys: usize,
    max_string_length: usize,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let limits = Limits {
        max_event_bytes,
        max_features,
        max_segment_keys,
        max_string_length,
    };
    let Some(raws) = raw_values(values) else {
        return Ok(None);
    };
    let outcomes = decode_all(py, &raws, limits);
    output::rows(py, &outcomes).map(Some)
}

/// Decode a batch into columns (codes and matrices; see `driftwire.decode._native`).
///
/// Returns None if a value is neither bytes nor None, or if the feature matrix would hold
/// more than `max_cells` cells (the caller then takes `decode_rows`).
#[pyfunction]
#[pyo3(signature = (values, max_event_bytes, max_features, max_segment_keys, max_string_length, max_cells))]
fn decode_columns<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    max_event_bytes: usize,
    max_features: usize,
    max_segment_keys: usize,
    max_string_length: usize,
    max_cells: usize,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let limits = Limits {
        max_event_bytes,
        max_features,
        max_segment_keys,
        max_string_length,
    };
    let Some(raws) = raw_values(values) else {
        return Ok(None);
    };
    let built = py.detach(|| build_columns(&raws, limits, max_cells));
    match built {
        Some(c) => columns::to_python(py, &c).map(Some),
        None => Ok(None),
    }
}

/// Category counts of one group at a time, in first-seen order; `take` empties it for the next.
struct Tally {
    counts: Vec<i64>,
    order: Vec<usize>,
}

impl Tally {
    fn new(categories: usize) -> Self {
        Tally {
            counts: vec![0; categories],
            order: Vec::new(),
        }
    }

    /// Count `code` when it names a category (>= 0 and below the number of names).
    fn add(&mut self, code: i32) {
        if code >= 0 && (code as usize) < self.counts.len() {
            let c = code as usize;
            if self.counts[c] == 0 {
                self.order.push(c);
            }
            self.counts[c] += 1;
        }
    }

    /// `names[code]` to its count, in first-seen order; the counts go back to zero.
    fn take<'py>(
        &mut self,
        py: Python<'py>,
        names: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let tally = pyo3::types::PyDict::new(py);
        for &c in &self.order {
            tally.set_item(names.get_item(c)?, self.counts[c])?;
            self.counts[c] = 0;
        }
        self.order.clear();
        Ok(tally)
    }
}

/// Per group (rows `starts[g]..starts[g + 1]` of `codes`, little-endian int32), a dict of
/// `names[code]` to its count for codes >= 0, in first-seen order within the group: what a
/// `Counter` over the group's values gives.
#[pyfunction]
fn tally_groups<'py>(
    py: Python<'py>,
    codes: &[u8],
    starts: Vec<usize>,
    names: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let codes: Vec<i32> = codes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut tally = Tally::new(names.len());
    let out = PyList::empty(py);
    for (g, &a) in starts.iter().enumerate() {
        let b = starts.get(g + 1).copied().unwrap_or(codes.len());
        for &c in &codes[a.min(b)..b] {
            tally.add(c);
        }
        out.append(tally.take(py, names)?)?;
    }
    Ok(out)
}

/// Per group (rows `starts[g]..starts[g + 1]` of a categorical feature's column), what
/// `driftwire.sketch.kinds.tally_categories` gives for its values: the count of each category
/// (`names[code]` of the rows whose kind is a string or a bool) in first-seen order, the rows
/// without a value (absent or null) and the wrong-typed rows (numbers). `kinds`: the
/// column's kind codes (uint8), `codes` its category codes (int32), `starts` int64; any
/// contiguous buffers (numpy arrays).
#[pyfunction]
fn tally_categories<'py>(
    py: Python<'py>,
    kinds: pyo3::buffer::PyBuffer<u8>,
    codes: pyo3::buffer::PyBuffer<i32>,
    starts: pyo3::buffer::PyBuffer<i64>,
    names: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    const NULL: u8 = 1;
    const NUMBER: u8 = 2;
    let kinds = kinds.to_vec(py)?;
    let codes = codes.to_vec(py)?;
    let starts = starts.to_vec(py)?;
    if kinds.len() != codes.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "kinds and codes differ in length",
        ));
    }
    let n = kinds.len();
    let mut tally = Tally::new(names.len());
    let out = PyList::empty(py);
    for (g, &a) in starts.iter().enumerate() {
        let b = starts
            .get(g + 1)
            .map_or(n, |&e| e.clamp(0, n as i64) as usize);
        let a = (a.clamp(0, n as i64) as usize).min(b);
        let (mut missing, mut wrong) = (0i64, 0i64);
        for (&kind, &code) in kinds[a..b].iter().zip(&codes[a..b]) {
            if kind <= NULL {
                missing += 1;
            } else if kind == NUMBER {
                wrong += 1;
            } else {
                tally.add(code);
            }
        }
        out.append((tally.take(py, names)?, missing, wrong))?;
    }
    Ok(out)
}

#[pymodule]
fn _driftwire_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_rows, m)?)?;
    m.add_function(wrap_pyfunction!(decode_columns, m)?)?;
    m.add_function(wrap_pyfunction!(tally_groups, m)?)?;
    m.add_function(wrap_pyfunction!(tally_categories, m)?)?;
    m.add_function(wrap_pyfunction!(records::batch_crcs, m)?)?;
    m.add_function(wrap_pyfunction!(records::py_crc32c, m)?)?;
    m.add(
        "REASONS",
        (
            "empty",
            "oversized",
            "not_json",
            "not_object",
            "missing_field",
            "wrong_type",
            "too_long",
            "non_finite",
            "negative_latency",
            "bad_timestamp",
            "too_many_features",
            "too_many_segment_keys",
        ),
    )?;
    Ok(())
}
