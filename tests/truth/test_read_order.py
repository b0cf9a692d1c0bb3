"""The alerts of a stream do not depend on the order its partitions are read in.

The truth stage reads the events and labels topics, two partitions each, in whatever order the
fetches return them: one partition can be read to its end before another is started. Here a
stream whose partitions each hold stretches of time (as a producer that sticks to a partition
for a while writes them) goes through the tracker as the stage feeds it: batches of records
from one partition after another, sorted by record time within a batch, the clock held by
:class:`~driftwire.truth.inputs.InputClock` before and after each batch. Every order gives the
alerts of the stream read in time order.

Two faults this caught: the first tick was set after the first prediction read, so a later
stretch read first skipped every window before it and froze the reference from windows that
held the drift (no alert at all); and a batch that read a partition to its end freed the clock
before its records were in, so the windows they belonged to were judged without them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from driftwire.truth.inputs import InputClock
from driftwire.truth.join import Prediction
from driftwire.truth.label import GroundTruth
from driftwire.truth.sent import SentAlerts
from driftwire.truth.settings import TruthSettings
from driftwire.truth.tracker import TruthTracker

BASE = 1_796_400_000_000
RATE = 100  # predictions per second
SECONDS = 100
DRIFT = (30, 60)  # seconds: a third of the outcomes flip in between

Item = Prediction | GroundTruth
Partition = tuple[str, int]  # ("events" | "labels", partition)


def stream() -> list[Item]:
    """Predictions and their labels (80%, 1-3 s later), in time order."""
    rng = np.random.default_rng(5)
    timed: list[tuple[int, int, Item]] = []
    for k in range(RATE * SECONDS):
        t = BASE + k * 1_000 // RATE
        score = float(rng.random())
        actual = bool(rng.random() < score)
        if DRIFT[0] * RATE <= k < DRIFT[1] * RATE and rng.random() < 1 / 3:
            actual = not actual
        timed.append((t, 2 * k, Prediction(f"e{k}", "churn", "1", "all", t, score, None)))
        if rng.random() < 0.8:
            seen = t + int(rng.integers(1_000, 3_000))
            label = GroundTruth(f"e{k}", "churn", None, "true" if actual else "false", seen, t)
            timed.append((seen, 2 * k + 1, label))
    timed.sort(key=lambda x: x[:2])
    return [item for _, _, item in timed]


def time_of(item: Item) -> int:
    return item.timestamp_ms if isinstance(item, Prediction) else item.observed_ms


def partitioned(items: list[Item], events_cuts: Sequence[int], labels_cuts: Sequence[int]):
    """Each topic's records go to partition 0, then 1, 0, ... switching at the cuts (s)."""
    parts: dict[Partition, list[Item]] = {(t, p): [] for t in ("events", "labels") for p in (0, 1)}
    for item in items:
        topic = "events" if isinstance(item, Prediction) else "labels"
        cuts = events_cuts if topic == "events" else labels_cuts
        partition = sum(time_of(item) - BASE >= c * 1_000 for c in cuts) % 2
        parts[(topic, partition)].append(item)
    return parts


def read(
    parts: dict[Partition, list[Item]], order: Sequence[Partition], batch: int
) -> list[tuple[str, str, str]]:
    """The alerts sent when the partitions are read one after another in ``order``, ``batch``
    records a fetch, as the truth stage adds them: (fingerprint, status, window end)."""
    settings = TruthSettings(
        bucket_seconds=1,
        window_seconds=5,
        horizon_seconds=7_200,
        evaluation_delay_seconds=4,
        reference_count=1_500,
    )
    tracker = TruthTracker(settings.tracker_settings())
    clock = InputClock()
    sent = SentAlerts()
    position = dict.fromkeys(parts, 0)
    queue = [p for p in order if parts[p]]
    out = []
    while queue:
        fetched: list[tuple[int, Partition, int, Item]] = []
        while len(fetched) < batch and queue:
            p = queue[0]
            start = position[p]
            taken = parts[p][start : start + batch - len(fetched)]
            fetched += [(time_of(x), p, start + i, x) for i, x in enumerate(taken)]
            position[p] += len(taken)
            if position[p] == len(parts[p]):
                queue.pop(0)
        behind = [p for p in parts if position[p] < len(parts[p])]
        tracker.limit_ms = clock.limit(behind=behind, reading={p for _, p, _, _ in fetched})
        alerts = []
        for _, p, _, item in sorted(fetched, key=lambda f: f[:3]):
            clock.note(p, time_of(item))
            if isinstance(item, Prediction):
                alerts += tracker.add_prediction(item)
            else:
                alerts += tracker.add_label(item)
        tracker.limit_ms = clock.limit(behind=behind, reading=())
        alerts += tracker.tick()
        due = [a for a in alerts if sent.admit(a.fingerprint, a.status, a.evaluated_at_ms)]
        out += [(a.fingerprint, a.status, str(a.window["end"])) for a in due]
    return out


@pytest.fixture(scope="module")
def in_time_order() -> tuple[list[Item], list[tuple[str, str, str]]]:
    items = stream()
    alone = read({("events", 0): items}, [("events", 0)], batch=len(items))
    return items, alone


E0, E1, L0, L1 = ("events", 0), ("events", 1), ("labels", 0), ("labels", 1)


@pytest.mark.parametrize(
    ("events_cuts", "labels_cuts", "order", "batch"),
    [
        # a later stretch of predictions read first: the windows before it were skipped, the
        # reference frozen from windows with the drift in them (no alert, or a late one)
        ([70], [70], [E1, E0, L0, L1], 2_000),
        ([50], [20], [E1, L0, L1, E0], 500),
        # labels read ahead; batches that read the last of a partition freed the clock
        # before their records were in (and the later stretch first, as above)
        ([65], [], [L0, E1, E0], 2_000),
        ([6], [26, 42], [E1, L1, L0, E0], 2_000),
        # orders that were right before
        ([7], [53, 56], [E0, E1, L1, L0], 2_000),
        ([40, 80], [60], [L1, E0, L0, E1], 500),
        ([], [], [L0, E0], 2_000),
    ],
)
def test_every_read_order_gives_the_alerts_of_the_time_order(
    in_time_order: tuple[list[Item], list[tuple[str, str, str]]],
    events_cuts: list[int],
    labels_cuts: list[int],
    order: list[Partition],
    batch: int,
) -> None:
    items, expected = in_time_order
    assert [s for _, s, _ in expected].count("firing") == 3  # accuracy, AUC, log loss
    assert [s for _, s, _ in expected].count("resolved") == 3
    assert read(partitioned(items, events_cuts, labels_cuts), order, batch) == expected
