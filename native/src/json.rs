//! Strict JSON (as orjson reads it) into a shallow value tree borrowed from the input.
//!
//! A single-pass scanner specialised to the event: the top-level keys the decoder reads are
//! matched as they are scanned, objects are kept down to `keep` levels (the event, then
//! `features`, `segment` and `prediction`), and deeper containers and unknown fields are
//! scanned, checked and reduced to a marker. Strings without escapes are borrowed from the
//! input. Duplicate keys behave as in a Python dict: the first position, the last value.
//!
//! What orjson refuses, this refuses: anything but RFC 8259 JSON (no NaN/Infinity, no
//! trailing commas, no leading zeros, no byte-order mark, only the four whitespace bytes),
//! invalid UTF-8 and lone surrogates in strings, control bytes in strings, more than 1024
//! nested containers, numbers that overflow to infinity, and anything after the document.
//! Integers in [-2^63, 2^64) are integers (`-0` is the integer 0), larger ones floats;
//! floats are correctly rounded (exact fast path, else the standard library's parser).

use std::borrow::Cow;

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

pub type Items<'a> = Vec<(Cow<'a, str>, Val<'a>)>;

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
    /// The raw bytes of the segment object (when it is one): equal bytes, equal items.
    pub segment_raw: &'a [u8],
}

impl<'a> Event<'a> {
    /// Empty the event, handing its object vectors back to `pool` for the next one.
    pub fn recycle(&mut self, pool: &mut Pool<'a>) {
        for slot in [&mut self.prediction, &mut self.features, &mut self.segment] {
            if let Some(Val::Obj(items)) = slot.take() {
                pool.put(items);
            }
        }
        self.model = None;
        self.version = None;
        self.timestamp = None;
        self.latency = None;
        self.event_id = None;
        self.segment_raw = &[];
    }
}

/// Spare item vectors, so that kept objects reuse their allocations from event to event.
#[derive(Default)]
pub struct Pool<'a> {
    spare: Vec<Items<'a>>,
}

impl<'a> Pool<'a> {
    fn take(&mut self) -> Items<'a> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(16))
    }
    fn put(&mut self, mut items: Items<'a>) {
        items.clear();
        if self.spare.len() < 8 {
            self.spare.push(items);
        }
    }
}

pub enum Doc {
    Event,
    NotObject,
}

type R<T> = Result<T, ()>;

/// Bytes that end the fast run of a string: the quote, the backslash, control bytes, non-ASCII.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i < 0x20 || i == b'"' as usize || i == b'\\' as usize || i >= 0x80;
        i += 1;
    }
    t
};

static POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

struct Parser<'a, 'p> {
    b: &'a [u8],
    i: usize,
    pool: &'p mut Pool<'a>,
}

#[inline]
fn hex(c: u8) -> R<u32> {
    match c {
        b'0'..=b'9' => Ok(u32::from(c - b'0')),
        b'a'..=b'f' => Ok(u32::from(c - b'a' + 10)),
        b'A'..=b'F' => Ok(u32::from(c - b'A' + 10)),
        _ => Err(()),
    }
}

impl<'a> Parser<'a, '_> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(())
    }

    #[inline]
    fn expect(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    /// A string; the cursor is on its opening quote.
    #[inline]
    fn string(&mut self) -> R<Cow<'a, str>> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        let mut high = false;
        loop {
            while i < b.len() && !STOP[b[i] as usize] {
                i += 1;
            }
            let c = *b.get(i).ok_or(())?;
            match c {
                b'"' => break,
                b'\\' => {
                    // an escape is one ASCII byte after the backslash (checked when decoded)
                    match b.get(i + 1) {
                        Some(0x20..=0x7f) => {}
                        _ => return Err(()),
                    }
                    escaped = true;
                    i += 2;
                }
                0x80..=0xff => {
                    high = true;
                    i += 1;
                }
                _ => return Err(()), // a control byte
            }
        }
        if i > b.len() {
            return Err(());
        }
        self.i = i + 1;
        let body = &b[start..i];
        let text: &'a str = if high {
            std::str::from_utf8(body).map_err(|_| ())?
        } else {
            // SAFETY: every byte is ASCII (checked above).
            unsafe { std::str::from_utf8_unchecked(body) }
        };
        if !escaped {
            return Ok(Cow::Borrowed(text));
        }
        unescape(text).map(Cow::Owned)
    }

    /// A number; the cursor is on its first byte ('-' or a digit).
    #[inline]
    fn number(&mut self) -> R<Val<'a>> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let negative = b[i] == b'-';
        if negative {
            i += 1;
        }
        let mut mantissa: u64 = 0;
        let mut digits = 0usize; // accumulated into the mantissa (at most 19)
        let mut exact = true;
        let mut fraction_digits = 0usize;
        let mut is_float = false;
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                digits = 1;
            }
            Some(b'1'..=b'9') => {
                while let Some(&c @ b'0'..=b'9') = b.get(i) {
                    if digits < 19 {
                        mantissa = mantissa * 10 + u64::from(c - b'0');
                        digits += 1;
                    } else {
                        exact = false;
                    }
                    i += 1;
                }
            }
            _ => return Err(()),
        }
        if b.get(i) == Some(&b'.') {
            is_float = true;
            i += 1;
            let first = i;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                if digits < 19 {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                    digits += 1;
                    fraction_digits += 1;
                } else {
                    exact = false;
                }
                i += 1;
            }
            if i == first {
                return Err(());
            }
        }
        let mut exponent: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            is_float = true;
            i += 1;
            let minus = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let first = i;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                if exponent < 100_000 {
                    exponent = exponent * 10 + i64::from(c - b'0');
                }
                i += 1;
            }
            if i == first {
                return Err(());
            }
            if minus {
                exponent = -exponent;
            }
        }
        self.i = i;
        if !is_float {
            if exact {
                if !negative {
                    return Ok(if mantissa <= i64::MAX as u64 {
                        Val::Int(mantissa as i64)
                    } else {
                        Val::UInt(mantissa)
                    });
                }
                if mantissa <= 1u64 << 63 {
                    return Ok(Val::Int((mantissa as i128).wrapping_neg() as i64));
                }
                return slow_float(&b[start..i]);
            }
            // SAFETY: sign and digits, ASCII.
            let text = unsafe { std::str::from_utf8_unchecked(&b[start..i]) };
            if !negative {
                if let Ok(v) = text.parse::<u64>() {
                    return Ok(if v <= i64::MAX as u64 {
                        Val::Int(v as i64)
                    } else {
                        Val::UInt(v)
                    });
                }
            }
            return slow_float(&b[start..i]);
        }
        // Clinger's fast path: an exact mantissa times an exact power of ten rounds once.
        if exact && mantissa <= 1u64 << 53 {
            let e = exponent - fraction_digits as i64;
            if (-22..=22).contains(&e) {
                let m = mantissa as f64;
                let v = if e >= 0 {
                    m * POW10[e as usize]
                } else {
                    m / POW10[(-e) as usize]
                };
                return Ok(Val::Float(if negative { -v } else { v }));
            }
        }
        slow_float(&b[start..i])
    }

    /// Any value, containers at `level` (1 for the document); objects kept while `keep` > 0.
    fn value(&mut self, level: usize, keep: u8) -> R<Val<'a>> {
        match self.peek()? {
            b'"' => Ok(Val::Str(self.string()?)),
            b'-' | b'0'..=b'9' => self.number(),
            b'{' => self.object(level, keep),
            b'[' => {
                self.array(level)?;
                Ok(Val::Array)
            }
            b't' => self.literal(b"true").map(|()| Val::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Val::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Val::Null),
            _ => Err(()),
        }
    }

    fn array(&mut self, level: usize) -> R<()> {
        if level > MAX_DEPTH {
            return Err(());
        }
        self.i += 1;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(level + 1, 0)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }

    fn object(&mut self, level: usize, keep: u8) -> R<Val<'a>> {
        if level > MAX_DEPTH {
            return Err(());
        }
        self.i += 1;
        self.ws();
        let mut items = if keep > 0 {
            Some(self.pool.take())
        } else {
            None
        };
        if self.peek()? != b'}' {
            loop {
                if self.peek()? != b'"' {
                    return Err(());
                }
                let key = self.string()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
                let value = self.value(level + 1, keep.saturating_sub(1))?;
                if let Some(items) = items.as_mut() {
                    items.push((key, value));
                }
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                    }
                    b'}' => break,
                    _ => return Err(()),
                }
            }
        }
        self.i += 1;
        Ok(match items {
            Some(mut items) => {
                dedup(&mut items);
                Val::Obj(items)
            }
            None => Val::Object,
        })
    }

    /// The event object's members, read into `event`; the cursor is on '{'.
    fn event(&mut self, event: &mut Event<'a>) -> R<()> {
        self.i += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.peek()? != b'"' {
                return Err(());
            }
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let kept = matches!(key.as_ref(), "prediction" | "features" | "segment");
            let start = self.i;
            let value = self.value(2, u8::from(kept))?;
            match key.as_ref() {
                "model" => event.model = Some(value),
                "model_version" => event.version = Some(value),
                "timestamp" => event.timestamp = Some(value),
                "latency_ms" => event.latency = Some(value),
                "event_id" => event.event_id = Some(value),
                "prediction" => replace(&mut event.prediction, value, self.pool),
                "features" => replace(&mut event.features, value, self.pool),
                "segment" => {
                    event.segment_raw = &self.b[start..self.i];
                    replace(&mut event.segment, value, self.pool);
                }
                _ => {}
            }
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }
}

fn replace<'a>(slot: &mut Option<Val<'a>>, value: Val<'a>, pool: &mut Pool<'a>) {
    if let Some(Val::Obj(items)) = slot.replace(value) {
        pool.put(items);
    }
}

#[cold]
fn slow_float(text: &[u8]) -> R<Val<'static>> {
    // SAFETY: a JSON number, ASCII.
    let text = unsafe { std::str::from_utf8_unchecked(text) };
    let v: f64 = text.parse().map_err(|_| ())?;
    if v.is_finite() {
        Ok(Val::Float(v))
    } else {
        Err(())
    }
}

/// The text of a string with escapes, decoded; surrogates must come in pairs.
#[cold]
fn unescape(text: &str) -> R<String> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&text[run..i]);
        let c = *b.get(i + 1).ok_or(())?;
        i += 2;
        match c {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let unit = hex4(b, i)?;
                i += 4;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                            return Err(());
                        }
                        let low = hex4(b, i + 2)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(());
                        }
                        i += 6;
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(()),
                    _ => unit,
                };
                out.push(char::from_u32(code).ok_or(())?);
            }
            _ => return Err(()),
        }
        run = i;
    }
    out.push_str(&text[run..]);
    Ok(out)
}

fn hex4(b: &[u8], i: usize) -> R<u32> {
    let q = b.get(i..i + 4).ok_or(())?;
    Ok((hex(q[0])? << 12) | (hex(q[1])? << 8) | (hex(q[2])? << 4) | hex(q[3])?)
}

/// Parse one value as orjson would into `event` (emptied first by the caller); `None` if
/// orjson refuses it.
pub fn parse<'a>(raw: &'a [u8], event: &mut Event<'a>, pool: &mut Pool<'a>) -> Option<Doc> {
    let mut p = Parser { b: raw, i: 0, pool };
    p.ws();
    let doc = match p.peek().ok()? {
        b'{' => {
            p.event(event).ok()?;
            Doc::Event
        }
        _ => {
            p.value(1, 0).ok()?;
            Doc::NotObject
        }
    };
    p.ws();
    if p.i != raw.len() {
        return None;
    }
    Some(doc)
}
