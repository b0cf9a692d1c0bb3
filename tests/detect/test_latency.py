"""Latency anomalies: spikes against the reference, SLOs, creep (Page-Hinkley), state, metrics."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from scenarios import MINUTE, START, of, pipeline, run, small, table

from driftwire.alerts.alert import encode
from driftwire.detect.detector import Detector
from driftwire.detect.latency import Creep, quantile_name
from driftwire.offline.generator import Change, generate
from driftwire.ops.config import ConfigError, LatencySettings, load_settings
from driftwire.ops.metrics import DriftScoreCollector


def ramp(start_minute: int, minutes: int, step: float) -> tuple[Change, ...]:
    """Latency x (1 + step), x (1 + 2 step), ... one minute each: a slow degradation."""
    return tuple(
        Change(
            "latency",
            START + (start_minute + i) * MINUTE,
            1 + step * (i + 1),
            end_ms=START + (start_minute + i + 1) * MINUTE,
        )
        for i in range(minutes)
    )


def latency_rows(alerts: list) -> set[tuple[str, str, str]]:
    return {(a.status, a.labels["segment"], a.labels["statistic"]) for a in alerts}


def test_spike_fires_per_percentile_and_resolves() -> None:
    change = Change("latency", START + 30 * MINUTE, 4.0, end_ms=START + 45 * MINUTE)
    alerts = run(generate(small(18_000, 60, change)))
    assert {a.kind for a in alerts} == {"latency_anomaly"}
    fired = of(alerts, "latency_anomaly", "firing")
    stats = {(a.labels["segment"], a.labels["statistic"]) for a in fired}
    assert {("all", "p50"), ("all", "p95"), ("all", "p99")} <= stats
    assert {"region=eu,tier=gold", "region=us,tier=gold"} <= {s for s, _ in stats}
    assert all(a.labels["severity"] == "warning" and 3.0 <= a.value < 10.0 for a in fired)
    # K = 2 windows: the window ending at 31 holds one slow bucket, the next one fires
    assert min(a.evaluated_at_ms for a in fired) == START + 32 * MINUTE
    resolved = {a.fingerprint for a in of(alerts, "latency_anomaly", "resolved")}
    assert {a.fingerprint for a in fired if a.labels["segment"] == "all"} <= resolved
    assert all(a.evaluated_at_ms >= START + 45 * MINUTE for a in alerts if a.status == "resolved")
    assert not [a for a in fired if a.labels["statistic"] == "p95_creep"]  # the spike speaks
    p99 = next(a for a in fired if a.labels["statistic"] == "p99")
    assert p99.reference["kind"] == "frozen_window"
    assert set(p99.evidence["quantiles_ms"]["reference"]) == {"p50", "p95", "p99"}


def test_ten_times_is_critical() -> None:
    change = Change("latency", START + 30 * MINUTE, 12.0)
    alerts = run(generate(small(12_000, 45, change)))
    severities = {
        a.labels["severity"] for a in of(alerts, "latency_anomaly", "firing") if a.value >= 10
    }
    assert severities == {"critical"}


def test_creep_regression_pin() -> None:
    # rule "ratio" (the earlier rule): +2% per minute from minute 20 on, never the 3x of a
    # spike; Page-Hinkley over the per-bucket p95 ratio fires at 1.2-1.5x
    alerts = run(generate(small(12_000, 60, *ramp(20, 40, 0.02))), latency={"rule": "ratio"})
    assert table(alerts) == [
        (38, "firing", "latency_anomaly", "region=us,tier=gold", "", "p95_creep"),
        (39, "firing", "latency_anomaly", "all", "", "p95_creep"),
        (40, "firing", "latency_anomaly", "region=eu,tier=gold", "", "p95_creep"),
    ]
    for alert in alerts:
        assert 1.2 <= alert.value < 1.5
        assert alert.evidence["page_hinkley"]["statistic"] > 1.5


def test_ramp_fires_at_the_relevance_floor_with_tail_counts() -> None:
    # the default rule on the same ramp: nothing below 1.5x (the relevance floor, for creep as
    # for the percentiles); from 1.5x (minute 45) the percentiles are relevant and significant
    alerts = run(generate(small(12_000, 60, *ramp(20, 40, 0.02))))
    rows = table(alerts)
    assert rows and all(r[1] == "firing" for r in rows)
    assert {(r[3], r[5]) for r in rows} >= {("all", "p50"), ("all", "p95"), ("all", "p99")}
    assert 45 <= min(r[0] for r in rows) <= 48
    for alert in alerts:
        assert 1.5 <= alert.value < 2.0
        counted = alert.evidence["tail_count"]
        assert counted["p_value"] < counted["alpha"] == 1e-4
        assert counted["above"] > 1.5 * counted["expected"]


def test_stationary_latency_is_silent() -> None:
    assert run(generate(small(12_000, 60))) == []


def test_slo_breach_in_milliseconds() -> None:
    change = Change("latency", START + 30 * MINUTE, 1.5)
    alerts = run(generate(small(12_000, 45, change)), latency={"slo_ms": {"p99": [30.0, 100.0]}})
    slo = [a for a in of(alerts, "latency_anomaly", "firing") if a.labels["statistic"] == "p99_slo"]
    assert {a.labels["segment"] for a in slo} >= {"all"}
    for alert in slo:  # p99 of lognormal(ln 12, 0.3) x 1.5 is ~36 ms
        assert alert.labels["severity"] == "warning"
        assert 30.0 <= alert.value < 60.0
        assert alert.threshold == 30.0


def test_restored_detector_continues_identically() -> None:
    # latency x 2.5 from minute 25 to 40: the percentiles fire and resolve; the restart falls
    # inside, and the resumed detector emits the very same alerts, byte for byte
    step = Change("latency", START + 25 * MINUTE, 2.5, end_ms=START + 40 * MINUTE)
    values = list(generate(small(12_000, 60, step)))
    straight = list(pipeline().run(values))
    p = pipeline()
    resumed = []
    for first in range(0, 6_000, 2_000):
        resumed += p.feed(values[first : first + 2_000])
    state = orjson.loads(orjson.dumps(p.detector.snapshot("churn")))  # JSON on the way
    parts = {key: blob for _, key, blob in p.detector.stored_parts() if blob is not None}
    assert state["versions"]["1.4.2"]["creep"]
    p.detector = Detector(
        p.settings.detect,
        p.settings.alerts,
        p.references,
        bucket_ms=60_000,
        on_evaluation=p._evaluated,
    )
    p.detector.restore("churn", state)
    for key in p.detector.part_keys("churn"):  # the window's buckets, the frozen reference
        if key in parts:  # and the latency's slots that were stored (none closed yet)
            p.detector.load_part(key, parts[key])
    for first in range(6_000, len(values), 2_000):
        resumed += p.feed(values[first : first + 2_000])
    resumed += p.finish()
    assert straight
    assert [encode(a, "test") for a in resumed] == [encode(a, "test") for a in straight]


def test_creep_state_round_trip_is_exact() -> None:
    rng = np.random.default_rng(8)
    series = 12.0 * rng.lognormal(0.0, 0.05, 200) * np.linspace(1.0, 1.5, 200)
    original = Creep(LatencySettings())
    for x in series[:90]:
        original.update(float(x))
    copy = Creep.from_state(LatencySettings(), orjson.loads(orjson.dumps(original.to_state())))
    a = [original.update(float(x)) for x in series[90:]]
    b = [copy.update(float(x)) for x in series[90:]]
    assert a == b and any(a)
    assert original.to_state() == copy.to_state()


def test_latency_percentiles_are_exported_in_seconds() -> None:
    p = pipeline()
    list(p.run(generate(small(6_000, 20))))
    registry = CollectorRegistry()
    registry.register(DriftScoreCollector(p.detector.condition_samples, p.detector.latency_samples))
    labels = {"model": "churn", "model_version": "1.4.2", "segment": "all"}
    p99 = registry.get_sample_value("driftwire_latency_seconds", {**labels, "percentile": "p99"})
    p50 = registry.get_sample_value("driftwire_latency_seconds", {**labels, "percentile": "p50"})
    assert p50 is not None and p99 is not None
    assert 0.010 < p50 < 0.014 < 0.018 < p99 < 0.032  # lognormal(ln 12 ms, 0.3)
    firing = registry.get_sample_value(
        "driftwire_alerts_firing", {"kind": "latency_anomaly", "severity": "warning"}
    )
    assert firing == 0.0


def test_quantile_names() -> None:
    assert [quantile_name(q) for q in (0.5, 0.95, 0.99, 0.999)] == ["p50", "p95", "p99", "p99.9"]


@pytest.mark.parametrize(
    ("latency", "key"),
    [
        ({"slo_ms": {"p90": [10, 20]}}, "detect.latency"),
        ({"spike_factor": [5, 2]}, "detect.latency"),
        ({"creep_min_ratio": 1.05}, "detect.latency"),
        ({"quantiles": [0.5, 1.0]}, "detect.latency"),
    ],
)
def test_bad_latency_settings_name_the_key(latency: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"DRIFTWIRE_DETECT_LATENCY": orjson.dumps(latency).decode()})
    assert key in str(info.value)


# -- request-latency series through the Detector: references, tail counts, spikes ------------

POINT = 300_000  # 5-minute buckets
DAY = 288  # points
SERIES_START = 1_767_571_200_000  # a Monday, 00:00 UTC


def series_alerts(
    level: np.ndarray, *, seed: int, baseline_points: int, detect: dict | None = None
) -> tuple[list, int]:
    """Feed one point (Poisson(50) lognormal latencies x ``level``) per 5-minute bucket to the
    Detector, 1-hour windows; the first ``baseline_points`` are published as the baseline.
    Returns the latency alerts and the evaluation time the baseline span ends at."""
    from driftwire.detect.reference import Reference, ReferenceStore
    from driftwire.ops.config import Settings
    from driftwire.partials import Partial, Watermark
    from driftwire.sketch.profile import Profile

    rng = np.random.default_rng(seed)
    settings = Settings.model_validate(
        {
            "profile": {"bucket_seconds": 300},
            "detect": {"window_buckets": 12, "segments": False, **(detect or {})},
        }
    )
    profiles = []
    for i, lv in enumerate(level):
        x = rng.lognormal(np.log(80.0), 0.5, int(rng.poisson(50))) * lv
        p = Profile(start_ms=SERIES_START + i * POINT, end_ms=SERIES_START + (i + 1) * POINT)
        p.update([{}] * len(x), latency_ms=x)
        profiles.append(p)
    baseline = profiles[0].copy()
    for p in profiles[1:baseline_points]:
        baseline.merge(p)
    store = ReferenceStore()
    store.put(Reference("baseline", "baseline:series", "api", "1", {"all": baseline}))
    detector = Detector(settings.detect, settings.alerts, store, bucket_ms=POINT)
    alerts = []
    for i, p in enumerate(profiles):
        start = SERIES_START + i * POINT
        partial = Partial("s", 0, i, i, start, start + POINT, "api", "1", p.n_events,
                          {"": p.to_bytes()})  # fmt: skip
        alerts += detector.on_partial(partial, start + POINT)
        alerts += detector.on_watermark(Watermark("s", 0, 1, start + POINT), start + POINT)
    latency = [a for a in alerts if a.kind == "latency_anomaly"]
    return latency, SERIES_START + baseline_points * POINT


def daily_cycle(days: int, amplitude: float, seed: int) -> np.ndarray:
    """ln level: amplitude x sin(time of day) plus AR(1) noise (sd 0.1): trough to peak
    exp(2 amplitude)."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    noise = np.zeros(len(t))
    for i in range(1, len(t)):
        noise[i] = 0.95 * noise[i - 1] + rng.normal(0.0, 0.03)
    return np.exp(amplitude * np.sin(2 * np.pi * (t % DAY) / DAY) + noise)


SEASONAL_DAY = {"references": {"default": "seasonal", "seasonal_period": "day"}}


LATENCY_ONLY = {
    "references": {"overrides": {"api/latency_ms": "seasonal"}, "seasonal_period": "day"}
}


LATENCY_BASELINE = {"latency": {"reference": "baseline"}}


@pytest.mark.parametrize(
    "detect", [{}, SEASONAL_DAY, LATENCY_ONLY], ids=["defaults", "model", "latency_ms"]
)
def test_daily_cycle_with_a_seasonal_reference_is_quiet_for_a_week(detect: dict) -> None:
    # trough to peak 3.3x every day; the first day is the baseline, the seasonal reference (the
    # same hours of the last 7 days, latency's own, whatever the model's drift uses; or of 4
    # with an override of its latency) takes over from day 2: nothing fires over the next week.
    # Before, latency was compared with the baseline at defaults, and every peak fired.
    level = daily_cycle(9, 0.6, seed=4)
    alerts, _ = series_alerts(level, seed=4, baseline_points=DAY, detect=detect)
    counted = [a for a in alerts if a.evaluated_at_ms >= SERIES_START + 2 * DAY * POINT]
    assert [a.summary for a in counted if a.status == "firing"] == []
    early = [a for a in alerts if a.evaluated_at_ms < SERIES_START + DAY * POINT]
    assert early  # the first day against the all-day baseline: the cycle shows, and says why
    for alert in early:
        assert alert.reference["kind"] == "baseline"
        days = 4 if detect is LATENCY_ONLY else 7  # the override's periods, or latency's own
        assert alert.reference["note"].startswith(f"seasonal: 0 of {days} days, 0 latencies")
        assert "until then the baseline is the latency reference" in alert.reference["note"]
    # the same series against the baseline alone fires at the daily peaks: the reference matters
    against_baseline, _ = series_alerts(level, seed=4, baseline_points=DAY, detect=LATENCY_BASELINE)
    days = {(a.evaluated_at_ms - SERIES_START) // (DAY * POINT) for a in against_baseline}
    assert len(days - {0, 1}) >= 5


# latency follows detect.references, as drift does
TRAILING_DAY = {
    "references": {"default": "trailing_window"},
    "latency": {"reference": "references"},
}


@pytest.mark.parametrize(
    ("factor", "detect", "kind"),
    [(3.0, {}, "seasonal"), (3.0, SEASONAL_DAY, "seasonal"), (5.0, SEASONAL_DAY, "seasonal"),
     (5.0, TRAILING_DAY, "trailing_window")],
)  # fmt: skip
def test_spike_of_3x_is_caught_within_one_window(factor: float, detect: dict, kind: str) -> None:
    # a daily cycle (trough to peak 2.2x), every request x factor for one hour on day 5; a
    # trailing day holds the whole cycle, whose spread between slots widens the test 15-30x
    level = daily_cycle(6, 0.4, seed=11)
    at = 5 * DAY + 14 * 12 + 5  # 14:25 on day 5
    level[at : at + 12] *= factor
    alerts, _ = series_alerts(level, seed=11, baseline_points=DAY, detect=detect)
    fired = [a for a in alerts if a.status == "firing" and a.evaluated_at_ms >= SERIES_START
             + 2 * DAY * POINT]  # fmt: skip
    spike_ms = SERIES_START + at * POINT
    assert fired, "the spike was missed"
    assert all(spike_ms < a.evaluated_at_ms <= spike_ms + 24 * POINT for a in fired)
    first = min(fired, key=lambda a: a.evaluated_at_ms)
    assert first.evaluated_at_ms - spike_ms <= 12 * POINT  # within one 1-hour window
    # self-explanatory: the values, the reference and the rule
    assert first.reference["kind"] == kind
    counted = first.evidence.get("tail_count")
    if first.labels["statistic"] != "p95_creep":
        assert counted["p_value"] < counted["alpha"] and counted["above"] > counted["expected"]
        assert "requests above the reference" in first.summary
    assert first.value >= 1.5
    assert "Rule:" in first.description and "ms" in first.description


def test_tail_count_p_value_is_the_binomial_tail() -> None:
    from scipy.stats import binom

    from driftwire.detect._latency_tails import tail_pvalue

    for n, p in ((600, 0.01), (600, 0.05), (5000, 0.5), (120, 0.2)):
        for k in range(1, n, max(1, n // 40)):
            exact = float(binom.sf(k - 1, n, p))
            assert tail_pvalue(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)
    # a dispersion D is the binomial tail of k / D successes in n / D trials
    assert tail_pvalue(24, 1200, 0.01, dispersion=2.0) == pytest.approx(
        float(binom.sf(11, 600, 0.01)), rel=1e-9
    )


def test_tail_count_from_sketches_is_within_the_rank_error_of_the_exact_count() -> None:
    # stated bound: the window's count above the reference p99 is off by at most
    # rank_error x n (99% per query; 1.33% at k = 200), so the p-value lies between the
    # (quasi-)binomial tails at the ends of that interval, at the stated dispersion
    from driftwire.detect._latency_tails import tail_pvalue
    from driftwire.detect.latency import LatencyReference, tail_count
    from driftwire.sketch.numeric import NumericSketch

    rng = np.random.default_rng(21)
    for shift in (1.0, 1.6, 2.0):
        ref_values = rng.lognormal(0.0, 0.5, 20_000)
        win_values = rng.lognormal(0.0, 0.5, 3_000) * shift
        ref_sketch, win_sketch = NumericSketch(), NumericSketch()
        ref_sketch.update_batch(ref_values)
        win_sketch.update_batch(win_values)
        ref = LatencyReference.of(ref_sketch, (0.99,), "test")
        test = tail_count(win_sketch, ref, 0.99, 1e-4)
        assert test is not None
        exact = int((win_values > ref.quantiles["p99"]).sum())
        slack = win_sketch.rank_error * len(win_values)
        assert abs(test.above - exact) <= slack
        share = ref.tail(0.99)
        assert abs(share - float((ref_values > ref.quantiles["p99"]).mean())) <= 0.0133
        d = test.dispersion
        lo = tail_pvalue(exact + slack, len(win_values), share, d)
        hi = tail_pvalue(exact - slack, len(win_values), share, d)
        assert lo <= test.p_value <= hi
        assert test.significant == (shift > 1.0)


def test_tail_count_keeps_its_false_positive_rate_below_alpha() -> None:
    # no change: window and reference from the same lognormal; 300 seeded windows of 600
    # against references of 3,000: at alpha = 0.01 at most 1% + 3 binomial sd (2.7%) fire
    from driftwire.detect.latency import LatencyReference, tail_count
    from driftwire.sketch.numeric import NumericSketch

    rng = np.random.default_rng(5)
    fired = 0
    trials = 300
    for _ in range(trials):
        ref_sketch, win_sketch = NumericSketch(), NumericSketch()
        ref_sketch.update_batch(rng.lognormal(0.0, 0.5, 3_000))
        win_sketch.update_batch(rng.lognormal(0.0, 0.5, 600))
        ref = LatencyReference.of(ref_sketch, (0.5, 0.95, 0.99), "test")
        fired += any(
            t is not None and t.significant
            for t in (tail_count(win_sketch, ref, q, 0.01) for q in (0.95, 0.99))
        )
    assert fired / trials <= 0.01 * 2 + 3 * (0.02 * 0.98 / trials) ** 0.5


def test_spread_between_parts_widens_the_test() -> None:
    # a reference whose hourly parts differ (a daily cycle inside a trailing day) asks for more
    from driftwire.detect.latency import LatencyReference, tail_count
    from driftwire.sketch.numeric import NumericSketch

    rng = np.random.default_rng(9)
    flat, cyclic = [], []
    for h in range(24):
        a, b = NumericSketch(), NumericSketch()
        a.update_batch(rng.lognormal(0.0, 0.5, 600))
        b.update_batch(rng.lognormal(0.5 * np.sin(2 * np.pi * h / 24), 0.5, 600))
        flat.append(a)
        cyclic.append(b)

    def merged(parts: list[NumericSketch]) -> NumericSketch:
        out = parts[0].copy()
        for s in parts[1:]:
            out.merge(s)
        return out

    window = NumericSketch()
    window.update_batch(rng.lognormal(0.3, 0.5, 600))
    quiet = LatencyReference.of(merged(flat), (0.95,), "flat", flat)
    busy = LatencyReference.of(merged(cyclic), (0.95,), "cyclic", cyclic)
    assert quiet.spread["p95"] < 1e-3 < busy.spread["p95"]
    t_quiet, t_busy = tail_count(window, quiet, 0.95, 1e-4), tail_count(window, busy, 0.95, 1e-4)
    assert t_quiet is not None and t_busy is not None
    assert t_busy.dispersion > 3 * t_quiet.dispersion


def test_a_seasonal_reference_leaves_out_a_slot_with_an_incident() -> None:
    from driftwire.detect.latency import LatencyReference
    from driftwire.sketch.numeric import NumericSketch

    rng = np.random.default_rng(2)
    parts = []
    for i in range(8):
        s = NumericSketch()
        s.update_batch(rng.lognormal(0.0, 0.5, 600) * (3.0 if i == 5 else 1.0))
        parts.append(s)
    ref = LatencyReference.seasonal(parts, (0.5, 0.95, 0.99), "seasonal")
    assert ref is not None and ref.left_out == 1 and ref.parts == 7
    assert ref.quantiles["p99"] == pytest.approx(np.exp(0.5 * 2.326), rel=0.15)


def test_state_of_the_earlier_format_still_loads() -> None:
    from driftwire.detect.latency import LatencyReference

    old_ref = {"quantiles": {"p50": 12.0, "p95": 19.6, "p99": 24.0}, "count": 3000,
               "source": "first window"}  # fmt: skip
    ref = LatencyReference.from_state(old_ref)
    assert ref.tail(0.99) == pytest.approx(0.01) and ref.spread == {} and ref.left_out == 0
    assert LatencyReference.from_state(ref.to_state()) == ref
    # a whole detector snapshot of the earlier layout: latency_ref without the new keys and
    # creep states of the ln(p95) series (8 entries); it loads, and creep starts a new series
    values = list(generate(small(12_000, 60, *ramp(20, 22, 0.02))))
    p = pipeline()
    alerts = list(p.feed(values[:4_000]))
    state = orjson.loads(orjson.dumps(p.detector.snapshot("churn")))
    parts = {key: blob for _, key, blob in p.detector.stored_parts() if blob is not None}
    version = state["versions"]["1.4.2"]
    for r in version["latency_ref"].values():
        for key in ("tails", "spread", "rank_error", "parts", "left_out"):
            del r[key]
    version["creep"] = {s: c[:8] for s, c in version["creep"].items()}
    p.detector = Detector(p.settings.detect, p.settings.alerts, p.references, bucket_ms=60_000,
                          on_evaluation=p._evaluated)  # fmt: skip
    p.detector.restore("churn", state)
    for key in p.detector.part_keys("churn"):
        if key in parts:  # the latency's slots are asked for over their reach, stored or not
            p.detector.load_part(key, parts[key])
    restored = p.detector._models["churn"].versions["1.4.2"]
    assert restored.latency_ref is not None and all(c.buckets == 0 for c in restored.creep.values())
    alerts += p.feed(values[4_000:])
    alerts += p.finish()
    assert all(a.kind == "latency_anomaly" for a in alerts)


def test_resolve_ratio_must_be_below_min_ratio() -> None:
    with pytest.raises(ValueError, match="resolve_ratio"):
        LatencySettings(min_ratio=1.5, resolve_ratio=1.6)
