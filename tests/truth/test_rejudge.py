"""Windows judged again as their labels arrive: later judgements fire what the first could not
see, gauges hold each age's value on every label joined so far, and no window is alerted twice."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from driftwire.alerts.alert import Alert
from driftwire.alerts.policy import AlertPolicy, Thresholds
from driftwire.truth.join import Prediction
from driftwire.truth.label import GroundTruth
from driftwire.truth.reference import ReferencePerformance, ReferencePerformanceBuilder
from driftwire.truth.staged_policy import StagedPolicy
from driftwire.truth.tracker import TrackerSettings, TruthTracker

MINUTE = 60_000
Record = Prediction | GroundTruth


def stream(
    seed: int,
    minutes: int,
    *,
    flip_from: int | None,
    slow_flips: bool = True,
    slow_wrong: bool = False,
) -> list[Record]:
    """300 calibrated scored predictions a minute, labels for 80% of them 1-3 minutes later,
    in arrival order. From ``flip_from`` on, a third of the outcomes flip, and the label of a
    flipped outcome is slow (15-25 minutes): what is known when a window is first judged
    looks as good as ever (unless not ``slow_flips``). With ``slow_wrong`` the label of every
    prediction that was wrong is that slow, with or without a change."""
    rng = np.random.default_rng(seed)
    records: list[tuple[int, int, Record]] = []
    k = 0
    for minute in range(minutes):
        for t in np.sort(rng.integers(minute * MINUTE, (minute + 1) * MINUTE, size=300)).tolist():
            score = float(rng.random())
            actual = bool(rng.random() < score)
            delay = int(rng.integers(MINUTE, 3 * MINUTE))
            if flip_from is not None and minute >= flip_from and rng.random() < 1 / 3:
                actual = not actual
                slow = int(rng.integers(15 * MINUTE, 25 * MINUTE))
                delay = slow if slow_flips else delay
            if slow_wrong and actual != (score >= 0.5):
                delay = int(rng.integers(15 * MINUTE, 25 * MINUTE))
            k += 1
            event_id = f"e{k}"
            records.append((t, 2 * k, Prediction(event_id, "churn", "1", "all", t, score, None)))
            if rng.random() < 0.8:
                label = GroundTruth(event_id, "churn", None, str(actual).lower(), t + delay, None)
                records.append((t + delay, 2 * k + 1, label))
    return [r for _, _, r in sorted(records, key=lambda r: (r[0], r[1]))]


def reference() -> ReferencePerformance:
    rng = np.random.default_rng(99)
    builder = ReferencePerformanceBuilder(threshold=0.5)
    for score in rng.random(20_000).tolist():
        actual = "true" if rng.random() < score else "false"
        builder.add(segment="all", score=score, label=None, actual=actual)
    return builder.finish()


def tracker(*rejudge_minutes: int, baseline: bool = True) -> TruthTracker:
    t = TruthTracker(
        TrackerSettings(
            bucket_ms=MINUTE,
            window_ms=5 * MINUTE,
            horizon_ms=60 * MINUTE,
            evaluation_delay_ms=5 * MINUTE,
            rejudge_ms=tuple(m * MINUTE for m in rejudge_minutes),
        )
    )
    if baseline:
        t.use_baseline("churn", "1", "b1", reference())
    return t


def feed(t: TruthTracker, records: list[Record]) -> list[Alert]:
    alerts: list[Alert] = []
    for r in records:
        alerts += t.add_prediction(r) if isinstance(r, Prediction) else t.add_label(r)
    return alerts


def accuracy_transitions(alerts: list[Alert]) -> list[tuple[str, str, int, float]]:
    return [
        (a.status, a.labels["severity"], a.evaluated_at_ms, a.evidence["judged_after_seconds"])
        for a in alerts
        if a.kind == "performance_degradation" and a.labels["statistic"] == "accuracy"
    ]


def test_late_labels_that_reveal_a_degradation_fire_at_a_later_judgement() -> None:
    records = stream(5, 100, flip_from=30)
    # judged once, 5 minutes after each window: the flipped outcomes' labels are not in yet
    assert accuracy_transitions(feed(tracker(), records)) == []
    t = tracker(30)
    transitions = accuracy_transitions(feed(t, records))
    firing = [x for x in transitions if x[0] == "firing"]
    assert firing, transitions
    _, _, at, age_s = firing[0]
    # first window holding flipped predictions ends at minute 31; judged 30 minutes after it
    # ends (two consecutive breaching windows), never at the first judgement
    assert age_s == 30 * 60 and 61 * MINUTE <= at <= 64 * MINUTE
    # judged again at the horizon (60 minutes), the same windows are not sent again; an
    # escalation is the only second firing, and no severity fires twice
    assert all(x[3] == 30 * 60 for x in transitions)
    assert len({x[1] for x in firing}) == len(firing) <= 2
    assert t.judged[("churn", "1", "all")].keys() == {5 * MINUTE, 30 * MINUTE, 60 * MINUTE}


def test_each_age_holds_the_metric_of_every_label_joined_so_far() -> None:
    """At every judgement the gauges' value for each age equals scikit-learn on the pairs of
    that window joined by then, and the completeness is their share of its predictions."""
    records = stream(6, 70, flip_from=30)
    t = tracker(15, 30)
    key = ("churn", "1", "all")
    checked = 0
    seen: dict[int, int] = {}
    for i, r in enumerate(records):
        t.add_prediction(r) if isinstance(r, Prediction) else t.add_label(r)
        for age, judged in t.judged.get(key, {}).items():
            if seen.get(age) == judged.window_end_ms or judged.window_end_ms % (7 * MINUTE):
                continue  # not new, or not one of the windows checked (every 7th minute)
            seen[age] = judged.window_end_ms
            end, start = judged.window_end_ms, judged.window_end_ms - 5 * MINUTE
            so_far = records[: i + 1]
            scores = {
                p.event_id: p.score
                for p in so_far
                if isinstance(p, Prediction) and start <= p.timestamp_ms < end
            }
            actual = {g.event_id: g.actual == "true" for g in so_far if isinstance(g, GroundTruth)}
            ids = [e for e in scores if e in actual]
            y = np.array([actual[e] for e in ids])
            s = np.array([scores[e] for e in ids], dtype=float)
            assert judged.age_ms == age and end == t.clock_ms - t.clock_ms % MINUTE - age
            assert judged.joined == len(ids)
            assert judged.completeness == pytest.approx(len(ids) / len(scores), abs=1e-12)
            assert judged.metrics["accuracy"][0] == pytest.approx(
                accuracy_score(y, s >= 0.5), abs=1e-12
            )
            assert judged.metrics["log_loss"][0] == pytest.approx(log_loss(y, s), rel=1e-9)
            assert judged.metrics["auc"][0] == pytest.approx(roc_auc_score(y, s), abs=2e-3)
            checked += 1
    # windows of every age, before and after the slow labels of the flipped outcomes
    assert checked >= 18
    ages = t.judged[key]
    # the older the judgement, the more of the window's labels are in
    assert ages[5 * MINUTE].completeness < 0.7 < ages[30 * MINUTE].completeness
    assert ages[30 * MINUTE].completeness == pytest.approx(0.8, abs=0.05)


def test_rejudged_stationary_traffic_stays_quiet_and_a_seen_drift_is_sent_once() -> None:
    assert feed(tracker(15, 30), stream(7, 100, flip_from=None)) == []
    # a degradation whose labels are all fast: the first judgement alerts; later ones see the
    # same windows and send nothing more, so the transitions are those of one judgement
    fast = stream(9, 80, flip_from=30, slow_flips=False)
    once = accuracy_transitions(feed(tracker(), fast))
    staged = accuracy_transitions(feed(tracker(15, 30), fast))
    assert once and [x[:3] for x in staged] == [x[:3] for x in once]


@pytest.mark.parametrize("seed", range(5))
def test_one_stage_decides_as_the_alert_policy(seed: int) -> None:
    """Seeded series around the thresholds: one stage gives AlertPolicy's transitions."""
    rng = np.random.default_rng(seed)
    thresholds = Thresholds(1.0, 2.5)
    single = AlertPolicy(consecutive=2, resolve_windows=2, resolve_ratio=0.6)
    staged = StagedPolicy(consecutive=2, resolve_windows=2, resolve_ratio=0.6)
    level = 0.0
    for i in range(600):
        level = float(np.clip(level + rng.normal(0, 0.4), -0.5, 3.5))
        value = None if rng.random() < 0.05 else level
        assert staged.observe("k", 0, i, value, thresholds, now_ms=i) == single.observe(
            "k", value, thresholds, now_ms=i
        )


@pytest.mark.parametrize("seed", range(5))
def test_across_ages_firing_and_resolved_alternate_and_no_window_fires_twice(seed: int) -> None:
    """Seeded series judged at three ages (each age sees the window's value plus noise that
    shrinks with age): one alert at a time, never fired twice without a resolution between,
    and each firing is for a window past every window the alert before covered."""
    rng = np.random.default_rng(seed)
    thresholds = Thresholds(1.0, 2.5)
    policy = StagedPolicy(consecutive=2, resolve_windows=2, resolve_ratio=0.6)
    ages = (0, 5, 20)
    # the windows' true values: a wave through the warning and critical levels, and noise
    x = np.arange(400)
    truth = 1.2 + 1.6 * np.sin(2 * np.pi * x / 90) + rng.normal(0, 0.3, x.size)
    firing: str | None = None
    last_fired_end = -1
    judged_while_firing: list[int] = []
    fired = 0
    for tick in range(420):
        for age in ages:
            end = tick - age
            if not 0 <= end < len(truth):
                continue
            value = float(truth[end] + rng.normal(0, 0.6 / (1 + age)))
            if firing is not None:
                judged_while_firing.append(end)
            for t in policy.observe("k", age, end, value, thresholds, now_ms=tick):
                if t.status == "firing":
                    assert firing is None, (tick, age)
                    assert end > last_fired_end
                    firing, last_fired_end = t.severity, end
                    fired += 1
                else:
                    assert firing == t.severity, (tick, age)
                    firing = None
    assert fired >= 4  # the wave crosses the thresholds again and again


def test_without_a_baseline_each_age_is_held_against_the_first_windows_at_that_age() -> None:
    """Stationary traffic whose wrong predictions are labelled 15-25 minutes late: judged 5
    minutes after its end a window looks better than it is, judged 30 minutes after, as it is.
    A reference frozen at the first judgement would make every later one look worse; each age
    freezes its own from the first windows as it sees them, and no performance alert fires."""
    t = tracker(30, baseline=False)
    alerts = feed(t, stream(10, 100, flip_from=None, slow_wrong=True))
    assert [a for a in alerts if a.kind != "estimated_performance"] == []
    judged = t.judged[("churn", "1", "all")]
    early, later = judged[5 * MINUTE].metrics["accuracy"], judged[30 * MINUTE].metrics["accuracy"]
    assert later[0] < early[0] - 0.1  # what the first judgement's reference would flag
