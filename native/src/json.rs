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
    /// Not JSON (the parser's error, never in a parsed event).
    Bad,
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

/// Byte equality for short strings without a call into the C library (keys and categories
/// are mostly shorter than 16 bytes).
#[inline(always)]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |x: &[u8], i: usize| u64::from_le_bytes(x[i..i + 8].try_into().unwrap());
    let half = |x: &[u8], i: usize| u32::from_le_bytes(x[i..i + 4].try_into().unwrap());
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// `dedup`, skipped when the keys are those of the last object checked (events of one
/// producer list the same features in the same order).
fn dedup_known<'a, T>(items: &mut Vec<(Cow<'a, str>, T)>, known: &mut Vec<&'a [u8]>) {
    if items.len() == known.len()
        && items.iter().zip(known.iter()).all(|((k, _), seen)| {
            let k = k.as_bytes();
            (k.as_ptr() == seen.as_ptr() && k.len() == seen.len()) || same(k, seen)
        })
    {
        return;
    }
    dedup(items);
    known.clear();
    for (key, _) in items.iter() {
        match key {
            Cow::Borrowed(text) => known.push(text.as_bytes()),
            Cow::Owned(_) => {
                known.clear();
                return;
            }
        }
    }
}

fn dedup<T>(items: &mut Vec<(Cow<'_, str>, T)>) {
    let n = items.len();
    if n < 2 {
        return;
    }
    let duplicated = if n <= 16 {
        (1..n).any(|i| {
            let key = items[i].0.as_bytes();
            items[..i].iter().any(|(k, _)| same(k.as_bytes(), key))
        })
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
        if std::mem::take(&mut pool.owned) {
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
        } else {
            // No string of this event was unescaped into an owned one, so nothing in it owns
            // memory but the kept objects' vectors (objects below them are markers): the
            // values are forgotten instead of dropped one by one.
            for slot in [&mut self.prediction, &mut self.features, &mut self.segment] {
                match slot.take() {
                    Some(Val::Obj(mut items)) => {
                        // SAFETY: the items own nothing (see above); dropping them is a no-op.
                        unsafe { items.set_len(0) };
                        pool.keep(items);
                    }
                    other => std::mem::forget(other),
                }
            }
            for slot in [
                &mut self.model,
                &mut self.version,
                &mut self.timestamp,
                &mut self.latency,
                &mut self.event_id,
            ] {
                std::mem::forget(slot.take());
            }
        }
        self.segment_raw = &[];
    }
}

/// Spare item vectors, so that kept objects reuse their allocations from event to event.
#[derive(Default)]
pub struct Pool<'a> {
    spare: Vec<Items<'a>>,
    /// the keys of the last larger object, in order, known to hold no duplicate
    known: Vec<&'a [u8]>,
    /// a string was unescaped into an owned one since the last `Event::recycle`
    owned: bool,
    /// the last event's top-level keys (read without escapes) and their field codes, in order
    top: Vec<(&'a [u8], u8)>,
}

impl<'a> Pool<'a> {
    fn take(&mut self) -> Items<'a> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(16))
    }
    fn put(&mut self, mut items: Items<'a>) {
        items.clear();
        self.keep(items);
    }
    /// Keep an empty vector for the next object.
    fn keep(&mut self, items: Items<'a>) {
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

/// A high bit in each byte of `word` that is a quote, a backslash, below 0x20 or above 0x7f
/// (bits above the first such byte may be set spuriously; the first one is exact).
#[inline]
fn stop_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    zero(quote) | zero(backslash) | control | (word & HIGH)
}

/// A bit for each of the sixteen bytes that is a quote, a backslash, below 0x20 or above
/// 0x7f (every bit exact).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stop_bytes_16(bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    assert!(bytes.len() >= 16);
    // SAFETY: sixteen readable bytes (checked above); SSE2 is part of x86-64.
    unsafe {
        let v = _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // signed: 0x80..=0xff are negative, so below 0x20 too
        let low_or_high = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), low_or_high)) as u32
    }
}

static POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// How many of the eight bytes of `word` (little-endian: the first byte lowest) are ASCII
/// digits before the first other byte, and the value of those digits.
#[inline(always)]
/// Reads the run of digits at `b[i..]` into `mantissa`, eight at a time, while it holds them
/// exactly (19 digits, counted in `digits`); digits past that only clear `exact`. Returns the
/// index after the run.
#[inline(always)]
fn digit_run(
    b: &[u8],
    mut i: usize,
    mantissa: &mut u64,
    digits: &mut usize,
    exact: &mut bool,
) -> usize {
    loop {
        if let Some(chunk) = b.get(i..i + 8) {
            let (k, v) = digits8(u64::from_le_bytes(chunk.try_into().unwrap()));
            if *digits + k <= 19 {
                *mantissa = *mantissa * POW10_U64[k] + v;
                *digits += k;
                i += k;
                if k < 8 {
                    return i;
                }
                continue;
            }
        }
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            if *digits < 19 {
                *mantissa = *mantissa * 10 + u64::from(c - b'0');
                *digits += 1;
            } else {
                *exact = false;
            }
            i += 1;
        }
        return i;
    }
}

fn digits8(word: u64) -> (usize, u64) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // digits become 0..=9; a byte is another one when it or it plus 0x76 has its high bit
    // (a carry out of a byte of 0x8a or more reaches only later bytes: the first is exact)
    let t = word ^ (ONES * 0x30);
    let other = (t | t.wrapping_add(ONES * 0x76)) & (ONES * 0x80);
    let k = (other.trailing_zeros() / 8) as usize;
    if k == 0 {
        return (0, 0);
    }
    // the k digit values moved to the top bytes, zeros before them (leading zeros); then
    // pairs, fours and eights of digits combined, the first byte the most significant
    let v = t << (64 - 8 * k);
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_ffff_0000_ffff;
    let v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xffff_ffff;
    (k, v)
}

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

    /// After a member of an array or object: `true` past a `,` (and the whitespace after
    /// it: another member follows), `false` past `close`, an error on anything else.
    #[inline]
    fn more(&mut self, close: u8) -> R<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        if c == b',' {
            self.ws();
            Ok(true)
        } else if c == close {
            Ok(false)
        } else {
            Err(())
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

    /// Whether the string at the cursor (on its opening quote) is exactly `name`, the text
    /// of a key read earlier without escapes; if so the cursor moves past it. Such a text
    /// holds no quote, backslash or control byte and is valid UTF-8, so equal bytes up to a
    /// closing quote are the same string.
    #[inline(always)]
    fn predicted(&mut self, name: &[u8]) -> bool {
        let start = self.i + 1;
        let end = start + name.len();
        if self.b.get(end) == Some(&b'"') && same(&self.b[start..end], name) {
            self.i = end + 1;
            true
        } else {
            false
        }
    }

    /// A string; the cursor is on its opening quote.
    #[inline(always)]
    fn string(&mut self) -> R<Cow<'a, str>> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        let mut high = false;
        loop {
            // eight bytes at a time while none of them stops the run
            let mut found = false;
            #[cfg(target_arch = "x86_64")]
            while i + 16 <= b.len() {
                // sixteen bytes at a time (SSE2, in every x86-64)
                let stop = stop_bytes_16(&b[i..i + 16]);
                if stop != 0 {
                    i += stop.trailing_zeros() as usize;
                    found = true;
                    break;
                }
                i += 16;
            }
            while !found && i + 8 <= b.len() {
                let word = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
                let stop = stop_bytes(word);
                if stop != 0 {
                    // the first stopping byte is exact: no byte-by-byte look again
                    i += (stop.trailing_zeros() / 8) as usize;
                    found = true;
                    break;
                }
                i += 8;
            }
            if !found {
                // the last few bytes of the value
                while i < b.len() && !STOP[b[i] as usize] {
                    i += 1;
                }
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
        self.pool.owned = true;
        unescape(text).map(Cow::Owned)
    }

    /// A number as a value.
    #[inline(always)]
    fn number(&mut self) -> Val<'a> {
        match self.number_raw() {
            Num::Int(v) => Val::Int(v),
            Num::UInt(v) => Val::UInt(v),
            Num::Float(v) => Val::Float(v),
            Num::Bad => Val::Bad,
        }
    }

    /// A number; the cursor is on its first byte ('-' or a digit).
    #[inline(always)]
    fn number_raw(&mut self) -> Num {
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
                i = digit_run(b, i, &mut mantissa, &mut digits, &mut exact);
            }
            _ => return Num::Bad,
        }
        if b.get(i) == Some(&b'.') {
            is_float = true;
            i += 1;
            let first = i;
            let kept = digits;
            i = digit_run(b, i, &mut mantissa, &mut digits, &mut exact);
            fraction_digits = digits - kept;
            if i == first {
                return Num::Bad;
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
                return Num::Bad;
            }
            if minus {
                exponent = -exponent;
            }
        }
        self.i = i;
        if !is_float {
            if exact {
                if !negative {
                    return if mantissa <= i64::MAX as u64 {
                        Num::Int(mantissa as i64)
                    } else {
                        Num::UInt(mantissa)
                    };
                }
                if mantissa <= 1u64 << 63 {
                    return Num::Int((mantissa as i128).wrapping_neg() as i64);
                }
                return slow_float(&b[start..i]);
            }
            // SAFETY: sign and digits, ASCII.
            let text = unsafe { std::str::from_utf8_unchecked(&b[start..i]) };
            if !negative {
                if let Ok(v) = text.parse::<u64>() {
                    return if v <= i64::MAX as u64 {
                        Num::Int(v as i64)
                    } else {
                        Num::UInt(v)
                    };
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
                return Num::Float(if negative { -v } else { v });
            }
        }
        slow_float(&b[start..i])
    }

    /// Any value, containers at `level` (1 for the document); objects kept while `keep` > 0.
    fn value(&mut self, level: usize, keep: u8) -> Val<'a> {
        let Some(&c) = self.b.get(self.i) else {
            return Val::Bad;
        };
        let ok = match c {
            b'"' => return self.string().map_or(Val::Bad, Val::Str),
            b'-' | b'0'..=b'9' => return self.number(),
            b'{' => return self.object(level, keep).unwrap_or(Val::Bad),
            b'[' => return self.array(level).map_or(Val::Bad, |()| Val::Array),
            b't' => self.literal(b"true").map(|()| Val::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Val::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Val::Null),
            _ => Err(()),
        };
        ok.unwrap_or(Val::Bad)
    }

    /// A member's or element's value: scalars are read here, in the caller's frame (a value
    /// returned through memory and copied again costs more than reading it), containers by
    /// `value`.
    #[inline(always)]
    fn item(&mut self, level: usize, keep: u8) -> Val<'a> {
        match self.b.get(self.i) {
            Some(b'"') => self.string().map_or(Val::Bad, Val::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.value(level, keep),
        }
    }

    /// A kept object's member: its value is read straight into the next slot of `items`
    /// (built in a temporary and copied, it stalled on reading back what was just stored).
    #[inline(always)]
    fn member(
        &mut self,
        items: &mut Items<'a>,
        key: Cow<'a, str>,
        level: usize,
        keep: u8,
    ) -> R<()> {
        if items.len() == items.capacity() {
            items.reserve(16);
        }
        // SAFETY: there is room for one more item (reserved above); its fields are written
        // before the length covers it, and the key is dropped if the value is refused.
        unsafe {
            let end = items.as_mut_ptr().add(items.len());
            std::ptr::addr_of_mut!((*end).0).write(key);
            let slot = std::ptr::addr_of_mut!((*end).1);
            let ok = match self.b.get(self.i) {
                // each kind written straight into the slot: no whole value moved
                Some(b'-' | b'0'..=b'9') => match self.number_raw() {
                    Num::Int(v) => {
                        slot.write(Val::Int(v));
                        true
                    }
                    Num::UInt(v) => {
                        slot.write(Val::UInt(v));
                        true
                    }
                    Num::Float(v) => {
                        slot.write(Val::Float(v));
                        true
                    }
                    Num::Bad => false,
                },
                Some(b'"') => match self.string() {
                    Ok(text) => {
                        slot.write(Val::Str(text));
                        true
                    }
                    Err(()) => false,
                },
                _ => {
                    slot.write(self.value(level, keep));
                    !matches!(*slot, Val::Bad)
                }
            };
            if !ok {
                std::ptr::drop_in_place(std::ptr::addr_of_mut!((*end).0));
                return Err(());
            }
            items.set_len(items.len() + 1);
        }
        Ok(())
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
            if matches!(self.item(level + 1, 0), Val::Bad) {
                return Err(());
            }
            if !self.more(b']')? {
                return Ok(());
            }
        }
    }

    fn object(&mut self, level: usize, keep: u8) -> R<Val<'a>> {
        if keep > 0 {
            let mut items = self.pool.take();
            self.members(level, keep, Some(&mut items))?;
            Ok(Val::Obj(items))
        } else {
            self.members(level, 0, None)?;
            Ok(Val::Object)
        }
    }

    /// An object's members, kept into `items` (then without duplicate keys) when given; the
    /// cursor is on '{'.
    fn members(&mut self, level: usize, keep: u8, mut items: Option<&mut Items<'a>>) -> R<()> {
        if level > MAX_DEPTH {
            return Err(());
        }
        self.i += 1;
        self.ws();
        let mut members = 0;
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return Err(());
                }
                let key = match (items.is_some(), self.pool.known.get(members).copied()) {
                    // a kept object's key where the last larger object had it: compared in
                    // place, not scanned
                    (true, Some(name)) if self.predicted(name) => {
                        // SAFETY: `name` is the text of an earlier borrowed key (UTF-8)
                        Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(name) })
                    }
                    _ => self.string()?,
                };
                members += 1;
                self.ws();
                self.expect(b':')?;
                self.ws();
                match items.as_deref_mut() {
                    Some(items) => self.member(items, key, level + 1, keep - 1)?,
                    None => {
                        if matches!(self.item(level + 1, 0), Val::Bad) {
                            return Err(());
                        }
                    }
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        if let Some(items) = items {
            if items.len() >= 4 {
                dedup_known(items, &mut self.pool.known);
            } else {
                dedup(items);
            }
        }
        Ok(())
    }

    /// A top-level field's value, written straight into its slot (a value built apart and
    /// moved in was read back with wider loads than it was written with: a stall per field).
    /// Objects are kept `keep` levels down (1 for prediction, features and segment).
    #[inline(always)]
    fn field_value(&mut self, slot: &mut Option<Val<'a>>, keep: u8) -> R<()> {
        match self.b.get(self.i) {
            Some(b'"') => {
                let text = self.string()?;
                *slot = Some(Val::Str(text));
            }
            Some(b'-' | b'0'..=b'9') => match self.number_raw() {
                Num::Int(v) => *slot = Some(Val::Int(v)),
                Num::UInt(v) => *slot = Some(Val::UInt(v)),
                Num::Float(v) => *slot = Some(Val::Float(v)),
                Num::Bad => return Err(()),
            },
            Some(b'{') if keep > 0 => {
                // the items read straight into a vector that then moves into the slot (an
                // object returned as a value was read back with wider loads than written)
                let mut items = self.pool.take();
                self.members(2, keep, Some(&mut items))?;
                if let Some(Val::Obj(old)) = slot.take() {
                    self.pool.put(old);
                }
                *slot = Some(Val::Obj(items));
            }
            _ => {
                let value = self.value(2, keep);
                if matches!(value, Val::Bad) {
                    return Err(());
                }
                replace(slot, value, self.pool);
            }
        }
        Ok(())
    }

    /// The event object's members, read into `event`; the cursor is on '{'.
    fn event(&mut self, event: &mut Event<'a>) -> R<()> {
        let mut members = 0;
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
            // the key the last event had at this position, compared in place; else scanned
            let field = match self.pool.top.get(members).copied() {
                Some((name, code)) if self.predicted(name) => code,
                _ => {
                    let key = self.string()?;
                    let code = field(key.as_bytes());
                    self.pool.top.truncate(members);
                    if let (Cow::Borrowed(text), true) = (key, self.pool.top.len() == members) {
                        self.pool.top.push((text.as_bytes(), code));
                    }
                    code
                }
            };
            members += 1;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let start = self.i;
            let slot = match field {
                MODEL => &mut event.model,
                VERSION => &mut event.version,
                TIMESTAMP => &mut event.timestamp,
                LATENCY => &mut event.latency,
                EVENT_ID => &mut event.event_id,
                PREDICTION => &mut event.prediction,
                FEATURES => &mut event.features,
                SEGMENT => {
                    self.field_value(&mut event.segment, 1)?;
                    event.segment_raw = &self.b[start..self.i];
                    if !self.more(b'}')? {
                        return Ok(());
                    }
                    continue;
                }
                _ => {
                    if matches!(self.item(2, 0), Val::Bad) {
                        return Err(());
                    }
                    if !self.more(b'}')? {
                        return Ok(());
                    }
                    continue;
                }
            };
            self.field_value(slot, u8::from(field >= PREDICTION))?;
            if !self.more(b'}')? {
                return Ok(());
            }
        }
    }
}

const OTHER: u8 = 0;
const MODEL: u8 = 1;
const VERSION: u8 = 2;
const TIMESTAMP: u8 = 3;
const LATENCY: u8 = 4;
const EVENT_ID: u8 = 5;
const PREDICTION: u8 = 6;
const FEATURES: u8 = 7;
const SEGMENT: u8 = 8;

/// Which field of the event a top-level key names (OTHER: one the decoder does not read).
#[inline(always)]
fn field(key: &[u8]) -> u8 {
    let (name, code): (&[u8], u8) = match key.len() {
        5 => (b"model", MODEL),
        7 => (b"segment", SEGMENT),
        8 => match key[0] {
            b'f' => (b"features", FEATURES),
            _ => (b"event_id", EVENT_ID),
        },
        9 => (b"timestamp", TIMESTAMP),
        10 => match key[0] {
            b'p' => (b"prediction", PREDICTION),
            _ => (b"latency_ms", LATENCY),
        },
        13 => (b"model_version", VERSION),
        _ => return OTHER,
    };
    if same(key, name) {
        code
    } else {
        OTHER
    }
}

fn replace<'a>(slot: &mut Option<Val<'a>>, value: Val<'a>, pool: &mut Pool<'a>) {
    if let Some(Val::Obj(items)) = slot.replace(value) {
        pool.put(items);
    }
}

#[cold]
fn slow_float(text: &[u8]) -> Num {
    // SAFETY: a JSON number, ASCII.
    let text = unsafe { std::str::from_utf8_unchecked(text) };
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Num::Float(v),
        _ => Num::Bad,
    }
}

/// A number as the scanner reads it (small enough to come back in registers).
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bad,
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
            if matches!(p.value(1, 0), Val::Bad) {
                return None;
            }
            Doc::NotObject
        }
    };
    p.ws();
    if p.i != raw.len() {
        return None;
    }
    Some(doc)
}
