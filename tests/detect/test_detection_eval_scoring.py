"""The detection evaluation scores a hand-built alert sequence as computed here by hand.

``load_tests/evaluation``: the generated suite's episodes (one per condition from firing to
resolved, an escalation continuing its episode) and its precision / recall / delay, and the
real suite's episodes (incident members included), precision, delays and flaps.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

LOAD_TESTS = Path(__file__).resolve().parents[2] / "load_tests"
sys.path.insert(0, str(LOAD_TESTS))

from evaluation import generated, scoring  # noqa: E402
from evaluation.streams import HOUR, START, Change, Design, Stream  # noqa: E402
from evaluation.tables import load  # noqa: E402

from driftwire.alerts.alert import Alert  # noqa: E402

MIN = generated.MINUTE
T = generated.T  # the generated suite's change
SEGMENT = generated.SEGMENT
WINDOW_MS = 5 * MIN  # the defaults: 1-minute buckets, 5-bucket windows


def alert(status: str, minute: float, feature: str = "income", **labels: str) -> Alert:
    """An alert of the generated model evaluated ``minute`` minutes after the change."""
    full = {
        "alertname": "DriftwireDataDrift",
        "kind": "data_drift",
        "severity": "warning",
        "model": "churn",
        "model_version": "1.4.2",
        "segment": SEGMENT,
        "feature": feature,
        "statistic": "ks",
        **labels,
    }
    at = T + int(minute * MIN)
    return Alert(
        labels=full,
        status=status,
        summary="",
        description="",
        runbook_url="",
        generator_url="",
        starts_at_ms=at,
        ends_at_ms=at if status == "resolved" else None,
        evaluated_at_ms=at,
        value=None,
        threshold=None,
        bound=None,
        window={},
        reference={},
    )


def test_generated_episodes_and_score_match_a_hand_count() -> None:
    alerts = [
        alert("firing", -3),  # before the change: false (1)
        alert("resolved", -1),
        alert("firing", 2, feature="age"),  # another feature: false (2)
        alert("firing", 4),  # income in the segment after the change: true, first (3)
        # escalation: the warning resolves and the critical fires in one evaluation: the
        # same episode (no new alert for a user)
        alert("resolved", 6),
        alert("firing", 6, severity="critical"),
        alert("firing", 7, severity="critical"),  # a re-send of a firing alert: nothing new
        alert("resolved", 9, severity="critical"),
        alert("firing", 12),  # fires again: a second true episode (4)
        alert("firing", 13, segment="all"),  # the aggregate counts as true too (5)
    ]
    starts = generated.episodes(alerts)
    assert [(a.labels["feature"], a.labels["segment"], a.evaluated_at_ms - T) for a in starts] == [
        ("income", SEGMENT, -3 * MIN),
        ("age", SEGMENT, 2 * MIN),
        ("income", SEGMENT, 4 * MIN),
        ("income", SEGMENT, 12 * MIN),
        ("income", "all", 13 * MIN),
    ]
    scenario = next(s for s in generated.SCENARIOS if s.name == "income +1 sd, 1 segment")
    outcome = generated.Outcome()
    generated.score(scenario, alerts, outcome, WINDOW_MS)
    generated.score(scenario, [alert("firing", 2, feature="age")], outcome, WINDOW_MS)
    assert (outcome.runs, outcome.detected) == (2, 1)  # recall 1 / 2
    assert (outcome.true_alerts, outcome.false_alerts) == (3, 3)  # precision 3 / 6
    assert outcome.false_by_kind == {"data_drift": 3}
    assert outcome.delays == [4.0]  # minutes to the first true alert
    assert outcome.windows == [0.8]  # 4 of a 5-minute window
    # changed events in between: 40 events/s x 240 s x 1/8 of the traffic
    assert outcome.delay_events == [pytest.approx(1200.0)]
    row = generated.row(scenario.name, outcome, stationary=False)
    assert (row["recall"], row["precision"]) == (0.5, 0.5)


def event(status: str, hour: int, **labels: Any) -> dict[str, Any]:
    """An alert CloudEvent of the real suite's rand model, ``hour`` hours into the stream."""
    evidence = labels.pop("evidence", {})
    base = {"kind": "data_drift", "model": "rand", "model_version": "1", "segment": "plan=c95",
            "feature": "disea", "statistic": "ks", "severity": "warning"}  # fmt: skip
    ms = START + hour * HOUR
    return {
        "time": _iso(ms),
        "data": {"status": status, "labels": {**base, **labels}, "evidence": evidence},
    }


def _iso(ms: int) -> str:
    from driftwire.alerts.alert import iso

    text = iso(ms)
    assert text is not None
    return text


def test_real_suite_scores_precision_recall_delay_and_flaps_by_hand() -> None:
    table = load("rand")
    # a change of disea in plan c95 from bucket 10, a 40-bucket stream, 5-bucket windows
    change = Change("disea", 10, "location", 0.3, segments=("c95",))
    design = Design("rand", window_events=2500, reference_rows=60_000, buckets=40,
                    changes=(change,))  # fmt: skip
    per_bucket = {"c95": 100, "free": 400}
    stream = Stream(design, events=[], per_bucket=500, segment_counts=[per_bucket] * 40)
    member = {"kind": "data_drift", "segment": "plan=free", "feature": "lpi", "statistic": "ks"}
    events = [
        event("firing", 6, feature="lpi"),  # before the change, another feature: false (1)
        event("resolved", 8, feature="lpi"),
        event("firing", 13),  # disea in c95 after the change: true (2), announces it
        event("resolved", 20),  # resolved while the change stays: a flap
        event("firing", 24),  # again: true (3)
        # an incident listing a member in another segment: that member's episode is false (4)
        event("firing", 25, kind="upstream_change", feature="", statistic="",
              evidence={"members": [member]}),
        event("resolved", 30, kind="upstream_change", feature="", statistic=""),
        event("firing", 26, segment="all", kind="prediction_drift",
              feature="prediction.score"),  # the prediction in the aggregate: true (5)
    ]  # fmt: skip
    eps = scoring.episodes(events)
    got = [(e.condition.feature, e.condition.segment, (e.start_ms - START) // HOUR,
            None if e.end_ms is None else (e.end_ms - START) // HOUR) for e in eps]  # fmt: skip
    assert got == [
        ("lpi", "plan=c95", 6, 8),
        ("disea", "plan=c95", 13, 20),
        ("disea", "plan=c95", 24, None),
        ("lpi", "plan=free", 25, 30),
        ("prediction.score", "all", 26, None),
    ]
    score = scoring.score_run(eps, stream, table, window_buckets=5)
    assert (score.true_alerts, score.false_alerts) == (3, 2)  # precision 3 / 5
    assert score.false_by_kind == {"data_drift": 2}
    # announced by the window ending at hour 13: 3 buckets of 5 after the change, and the
    # changed scope's events of buckets 10, 11, 12
    assert score.detections == [(change, 0.6, 300)]
    # flaps per condition, per 24 buckets from its change (or the stream's start when false):
    # lpi c95 one pair over 40 buckets; disea c95 one pair over 30; lpi free one over 40; the
    # prediction none over 30
    assert sorted(score.flaps) == sorted([24 / 40, 24 / 30, 24 / 40, 0.0])
    assert score.flap_pairs == 3
