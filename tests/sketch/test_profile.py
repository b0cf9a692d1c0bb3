"""Profile: kind inference, wrong types, merge laws, halves versus whole, bytes."""

from __future__ import annotations

import contextlib
import math
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwire.errors import FormatError
from driftwire.sketch.kinds import (
    FeatureKind,
    FeatureKinds,
    feature_columns,
    infer_kind,
    to_numeric,
)
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch, SketchParams
from driftwire.sketch.profile import Profile

RANKS = np.linspace(0.0, 1.0, 11)
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

raw_value = st.one_of(
    st.none(),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_subnormal=False),
    st.booleans(),
    st.sampled_from(["a", "b", "c", "1.5"]),
)
row = st.dictionaries(st.sampled_from(["x", "y", "z"]), raw_value, max_size=3)
rows = st.lists(row, max_size=25)


def profile_of(data: list[dict[str, Any]], kinds: FeatureKinds | None = None, **kw: Any) -> Profile:
    p = Profile(kinds=kinds, **kw)
    n = len(data)
    rng = np.random.default_rng(n)
    p.update(
        data,
        prediction_score=rng.random(n),
        prediction_label=[("yes" if i % 3 else None) for i in range(n)],
        latency_ms=rng.gamma(2.0, 5.0, n),
    )
    return p


def summary(p: Profile) -> dict[str, Any]:
    """Everything a profile answers, in a comparable form (see :func:`same`)."""

    def num(s: NumericSketch) -> tuple[Any, ...]:
        return (
            s.count,
            s.missing,
            s.non_finite,
            s.min,
            s.max,
            s.mean if s.count else None,
            s.variance if s.count else None,
            tuple(s.quantiles(RANKS).tolist()) if s.count else None,
        )

    def cat(s: CategoricalSketch) -> tuple[Any, ...]:
        return (tuple(s.counts.items()), s.count, s.missing, s.other, s.count_error)

    def one(s: NumericSketch | CategoricalSketch) -> tuple[Any, ...]:
        return ("num", *num(s)) if isinstance(s, NumericSketch) else ("cat", *cat(s))

    return {
        "n": p.n_events,
        "span": (p.start_ms, p.end_ms),
        "features": {name: one(s) for name, s in sorted(p.features.items())},
        "wrong": dict(sorted(p.wrong_type.items())),
        "untyped": dict(sorted(p.untyped_missing.items())),
        "score": num(p.prediction_score),
        "label": cat(p.prediction_label),
        "latency": num(p.latency_ms),
    }


def same(a: Any, b: Any, path: str = "") -> None:
    """Recursive equality; floats equal to 1e-9 relative (merge order moves the last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(
            a, b, rel_tol=1e-9, abs_tol=1e-9
        ), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, tuple | list) and isinstance(b, tuple | list):
        assert len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# -- kinds -------------------------------------------------------------------------------------


def test_inference_rule() -> None:
    assert infer_kind([None, True, 3]) is FeatureKind.CATEGORICAL  # bool first, not int
    assert infer_kind([None, 3, "a"]) is FeatureKind.NUMERIC
    assert infer_kind([2.5]) is FeatureKind.NUMERIC
    assert infer_kind(["3"]) is FeatureKind.CATEGORICAL
    assert infer_kind([np.bool_(True)]) is FeatureKind.CATEGORICAL
    assert infer_kind([np.int64(3)]) is FeatureKind.NUMERIC
    assert infer_kind([None, [1], {"a": 1}]) is None  # undecidable values decide nothing
    assert infer_kind([[1], "x"]) is FeatureKind.CATEGORICAL


def test_kinds_are_declared_or_inferred_once() -> None:
    kinds = FeatureKinds({"plan": "categorical"})
    assert kinds.resolve("plan", [1.0]) is FeatureKind.CATEGORICAL
    assert kinds.resolve("age", [None]) is None and "age" not in kinds
    assert kinds.resolve("age", [None, 41]) is FeatureKind.NUMERIC
    assert kinds.resolve("age", ["forty"]) is FeatureKind.NUMERIC  # never changes
    assert dict(kinds) == {"plan": "categorical", "age": "numeric"}
    with pytest.raises(ValueError, match="'numeric' or 'categorical'"):
        FeatureKinds({"x": "text"})


def test_to_numeric_keeps_numbers_and_flags_the_rest() -> None:
    values, wrong = to_numeric([1, 2.5, None, True, "3", [1], np.float32(4), 10**400, -(10**400)])
    assert wrong is not None
    assert wrong.tolist() == [False, False, False, True, True, True, False, False, False]
    kept = values[~wrong]
    assert kept[:2].tolist() == [1.0, 2.5] and math.isnan(kept[2])
    assert kept[3:].tolist() == [4.0, math.inf, -math.inf]
    values, wrong = to_numeric([1, None, 2.0])
    assert wrong is None and np.isnan(values[1])


def test_feature_columns_fast_and_general_paths() -> None:
    assert feature_columns([{"a": 1, "b": "x"}, {"a": 2, "b": None}]) == (
        ["a", "b"],
        [[1, 2], ["x", None]],
    )
    # different keys per row: the union, first seen first, None where absent
    assert feature_columns([{"a": 1}, {"b": 2}, {"a": 3, "b": 4}]) == (
        ["a", "b"],
        [[1, None, 3], [None, 2, 4]],
    )
    # same count of keys but different names must not take the fast path
    assert feature_columns([{"a": 1}, {"b": 2}]) == (["a", "b"], [[1, None], [None, 2]])
    assert feature_columns([]) == ([], [])


# -- wrong types -----------------------------------------------------------------------------


def test_wrong_types_are_counted_and_never_change_the_kind() -> None:
    p = Profile()
    p.update_feature("age", [37, None, "n/a", True, 41.5, [1]])
    p.update_feature("vip", [True, False, "gold", 3, None, {"a": 1}])
    p.update_feature("age", ["again"])
    age, vip = p.feature("age"), p.feature("vip")
    assert isinstance(age, NumericSketch) and isinstance(vip, CategoricalSketch)
    assert (age.count, age.missing, age.mean) == (2, 1, 39.25)
    assert vip.counts == {"false": 1, "gold": 1, "true": 1} and vip.missing == 1
    assert dict(p.wrong_type) == {"age": 4, "vip": 2}


def test_undecided_features_keep_their_missing_count_until_typed() -> None:
    p = Profile()
    p.update_feature("later", [None, None, [1]])
    assert p.feature("later") is None
    assert (p.untyped_missing["later"], p.wrong_type["later"]) == (2, 1)
    p.update_feature("later", ["x", None])
    s = p.feature("later")
    assert isinstance(s, CategoricalSketch) and (s.count, s.missing) == (1, 3)
    assert "later" not in p.untyped_missing


def test_declared_kinds_win_over_inference() -> None:
    p = Profile(kinds={"zip": "categorical"})
    p.update([{"zip": 12345}, {"zip": "01234"}])
    zip_sketch = p.feature("zip")
    assert isinstance(zip_sketch, CategoricalSketch)
    assert zip_sketch.counts == {"01234": 1} and p.wrong_type["zip"] == 1


def test_update_checks_column_lengths() -> None:
    with pytest.raises(ValueError, match="latency_ms has 1 entries for 2 events"):
        Profile().update([{}, {}], latency_ms=np.array([1.0]))


# -- merge -------------------------------------------------------------------------------------


@SETTINGS
@given(rows, rows)
def test_merge_is_commutative(a: list, b: list) -> None:
    # independent kinds: the two sides may disagree about a feature's kind
    ab = profile_of(a).merge(profile_of(b))
    ba = profile_of(b).merge(profile_of(a))
    assert summary(ab) == summary(ba)  # exactly: every merge step is symmetric


@SETTINGS
@given(rows, rows, rows)
def test_merge_is_associative(a: list, b: list, c: list) -> None:
    left = profile_of(a).merge(profile_of(b)).merge(profile_of(c))
    right = profile_of(a).merge(profile_of(b).merge(profile_of(c)))
    same(summary(left), summary(right))


def test_kind_conflicts_resolve_to_numeric() -> None:
    nums = Profile()
    nums.update_feature("f", [1.0, None, 3.0])
    cats = Profile()
    cats.update_feature("f", ["x", "y", None, None])
    for merged in (nums.copy().merge(cats), cats.copy().merge(nums)):
        f = merged.feature("f")
        assert isinstance(f, NumericSketch)
        assert (f.count, f.missing, merged.wrong_type["f"]) == (2, 3, 2)


def test_merge_unions_features_and_never_aliases() -> None:
    a = Profile(start_ms=0, end_ms=60_000)
    a.update([{"x": 1.0}])
    b = Profile(start_ms=60_000, end_ms=120_000)
    b.update([{"y": "u"}, {"y": "v"}])
    a.merge(b)
    assert sorted(a.features) == ["x", "y"] and a.n_events == 3
    assert (a.start_ms, a.end_ms) == (0, 120_000)
    b.update([{"y": "w"}])
    y = a.feature("y")
    assert isinstance(y, CategoricalSketch) and y.count == 2  # b's later update is not in a
    a.merge(a)
    assert a.n_events == 6


def test_halves_merged_equal_the_whole() -> None:
    rng = np.random.default_rng(21)
    n = 20_000
    data = [
        {
            "income": float(x) if i % 97 else None,
            "age": int(a),
            "country": ["DE", "FR", "US"][int(c)],
            "vip": bool(v),
        }
        for i, (x, a, c, v) in enumerate(
            zip(
                rng.lognormal(10, 1, n),
                rng.integers(18, 90, n),
                rng.integers(0, 3, n),
                rng.random(n) < 0.1,
                strict=True,
            )
        )
    ]
    score = rng.random(n)
    label = [("yes" if s > 0.7 else None) for s in score.tolist()]
    latency = rng.gamma(2.0, 5.0, n)

    def build(a: int, b: int) -> Profile:
        p = Profile(kinds=kinds)
        p.update(
            data[a:b],
            prediction_score=score[a:b],
            prediction_label=label[a:b],
            latency_ms=latency[a:b],
        )
        return p

    kinds = FeatureKinds()
    whole = build(0, n)
    cut = 7_321
    halves = build(0, cut).merge(build(cut, n))
    for name in ("income", "age"):
        h, w = halves.feature(name), whole.feature(name)
        assert isinstance(h, NumericSketch) and isinstance(w, NumericSketch)
        raw = np.array([r[name] for r in data if r[name] is not None], dtype=np.float64)
        assert (h.count, h.missing, h.min, h.max) == (w.count, w.missing, w.min, w.max)
        assert (h.count, h.min, h.max) == (raw.size, raw.min(), raw.max())
        assert h.mean == pytest.approx(raw.mean(), rel=1e-9)
        assert h.variance == pytest.approx(raw.var(), rel=1e-9)
        x = np.sort(raw.astype(np.float32))
        q = h.quantiles(RANKS).astype(np.float32)
        lo = np.searchsorted(x, q, "left") / x.size
        hi = np.searchsorted(x, q, "right") / x.size
        assert np.all(lo <= RANKS + h.rank_error) and np.all(hi >= RANKS - h.rank_error)
    for name in ("country", "vip"):
        h, w = halves.feature(name), whole.feature(name)
        assert isinstance(h, CategoricalSketch) and isinstance(w, CategoricalSketch)
        assert h.counts == w.counts and h.missing == w.missing
    assert summary(halves)["label"] == summary(whole)["label"]
    assert halves.latency_ms.mean == pytest.approx(latency.mean(), rel=1e-9)
    assert halves.prediction_score.count == whole.prediction_score.count == n
    assert halves.n_events == whole.n_events == n


def test_merge_refuses_other_parameters() -> None:
    with pytest.raises(FormatError, match="k=100"):
        Profile().merge(Profile(SketchParams(k=100)))
    with pytest.raises(TypeError):
        Profile().merge(NumericSketch())  # type: ignore[arg-type]


# -- bytes -------------------------------------------------------------------------------------


@SETTINGS
@given(rows, st.booleans())
def test_round_trip_answers_alike_and_reserializes_identically(data: list, span: bool) -> None:
    p = profile_of(data, start_ms=-60_000, end_ms=0) if span else profile_of(data)
    raw = p.to_bytes()
    back = Profile.from_bytes(raw)
    assert back.to_bytes() == raw
    assert summary(back) == summary(p)


def test_round_trip_of_a_large_profile() -> None:
    rng = np.random.default_rng(4)
    data = [
        {"x": float(v), "c": f"c{int(c)}"}
        for v, c in zip(rng.normal(size=30_000), rng.zipf(1.5, 30_000), strict=True)
    ]
    p = profile_of(data)
    raw = p.to_bytes()
    back = Profile.from_bytes(raw, SketchParams())
    assert back.to_bytes() == raw and summary(back) == summary(p)
    c = back.feature("c")
    assert isinstance(c, CategoricalSketch) and not c.is_exact


def test_from_bytes_refuses_other_parameters_and_bad_bytes() -> None:
    p = profile_of([{"x": 1.0, "c": "a"}] * 3)
    raw = p.to_bytes()
    with pytest.raises(FormatError, match="expected SketchParams"):
        Profile.from_bytes(raw, SketchParams(cap=64))
    small = Profile(SketchParams(k=64)).to_bytes()
    assert Profile.from_bytes(small).params.k == 64
    for cut in range(len(raw)):
        with pytest.raises(FormatError):
            Profile.from_bytes(raw[:cut])
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        with pytest.raises(FormatError):
            Profile.from_bytes(bytes(flipped))
    with pytest.raises(FormatError, match="magic"):
        Profile.from_bytes(NumericSketch().to_bytes())


def test_from_bytes_checks_content_under_a_valid_checksum() -> None:
    raw = profile_of([{"x": 1.0}]).to_bytes()
    body = bytearray(raw[:-4])
    # the last feature entry is x: name (len 1, "x"), kind code; make the kind code unknown
    at = body.rindex(b"\x01x") + 2
    body[at] = 7
    forged = bytes(body) + struct.pack("<I", zlib.crc32(body))
    with pytest.raises(FormatError, match="kind code 7"):
        Profile.from_bytes(forged)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_format_error_only(blob: bytes) -> None:
    for data in (blob, b"DWPF\x01" + blob, _sealed(b"DWPF\x01" + blob)):
        with contextlib.suppress(FormatError):
            Profile.from_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_payloads_under_a_valid_checksum_raise_format_error_only(data: Any) -> None:
    raw = _PAYLOAD
    i = data.draw(st.integers(min_value=5, max_value=len(raw) - 5))
    j = data.draw(st.integers(min_value=i, max_value=min(len(raw) - 4, i + 8)))
    junk = data.draw(st.binary(max_size=8))
    body = raw[:i] + junk + raw[j:-4]
    with contextlib.suppress(FormatError):
        Profile.from_bytes(_sealed(body))


def _sealed(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


_PAYLOAD = profile_of(
    [{"x": float(i), "c": f"v{i % 300}", "b": i % 2 == 0} for i in range(400)]
).to_bytes()


def test_kind_lookups_create_like_sketch_for_and_refuse_the_other_kind() -> None:
    """``numeric_sketch`` / ``categorical_sketch`` (the fold's lookups) create a feature's
    sketch with its untyped missing values, return it again, and refuse the other kind."""
    p = Profile()
    p.add_untyped_missing("age", 2)
    age = p.numeric_sketch("age")
    assert isinstance(age, NumericSketch) and age.missing == 2
    assert p.numeric_sketch("age") is age and p.sketch_for("age", FeatureKind.NUMERIC) is age
    assert p.categorical_sketch("age") is None
    plan = p.categorical_sketch("plan")
    assert isinstance(plan, CategoricalSketch) and plan.missing == 0
    assert p.categorical_sketch("plan") is plan and p.numeric_sketch("plan") is None
    assert "age" not in p.untyped_missing
