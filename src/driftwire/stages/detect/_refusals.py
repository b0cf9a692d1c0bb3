"""What the detect stage refuses: partials-topic records that fail the intake checks
(:mod:`driftwire.detect.intake`), dead-lettered with the headers events get (stage
``detect``), and evaluations that raised (:meth:`driftwire.detect.detector.Detector.take_failures`).
Both are counted in a metric and logged at most once per :data:`LOG_INTERVAL_S` per kind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from driftwire.decode.batch import Rejection
from driftwire.decode.deadletter import SourceRecord, dead_letter_headers, fit_dead_letter
from driftwire.detect.intake import Rejected
from driftwire.ops.logs import LogLimiter
from driftwire.ops.metrics import DetectMetrics

log = logging.getLogger("driftwire.stages.detect.stage")

STAGE = "detect"
#: At most one log line per reason of refused records, and one for failed evaluations, per
#: this many seconds (the metrics count every one).
LOG_INTERVAL_S = 300.0


class Refusals:
    """Dead letters of refused partials records, and the count of failed evaluations.

    ``topic`` is the faust topic of the dead letters (set when the app is built); ``missing``
    says the topic did not exist at start, when refused records are counted and logged only.
    """

    def __init__(
        self,
        metrics: DetectMetrics,
        *,
        partials_topic: str,
        group: str,
        timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._m = metrics
        self._partials = partials_topic
        self._group = group
        self._timeout_s = timeout_s
        self._clock = clock
        self._log_limit = LogLimiter(LOG_INTERVAL_S)
        self.topic: Any = None
        self.missing = False

    async def dead_letter(
        self, rejected: Rejected, value: bytes | None, partition: int, message: Any, now_ms: int
    ) -> BaseException | None:
        """Count a refused record and dead-letter it untouched, waiting for the broker; the
        error if it did not acknowledge (the stage then stops, and reads the record again)."""
        self._m.invalid_partials.labels(reason=rejected.reason).inc()
        self._m.records.labels(type="malformed").inc()
        if self._log_limit(f"invalid:{rejected.reason}", now_s=self._clock()):
            log.warning(
                "partials record refused and dead-lettered",
                extra={
                    "fields": {
                        "reason": rejected.reason,
                        "field": rejected.field,
                        "partition": partition,
                        "error": rejected.message[:200],
                    }
                },
            )
        if self.topic is None or self.missing:
            return None
        key = getattr(message, "key", None)
        stamp = getattr(message, "timestamp", None)
        original = getattr(message, "headers", None) or ()
        if isinstance(original, dict):
            original = original.items()
        headers = dead_letter_headers(
            Rejection(0, rejected.reason, rejected.field or None, rejected.message),
            SourceRecord(
                self._partials,
                partition,
                int(getattr(message, "offset", -1)),
                None if stamp is None else int(stamp * 1000),
            ),
            group=self._group,
            stage=STAGE,
            now_ms=now_ms,
            original=tuple((str(k), bytes(v or b"")) for k, v in original),
        )
        sent_value, headers = fit_dead_letter(key, value, headers)
        try:
            fut = await self.topic.send(key=key, value=sent_value, headers=headers)
            await asyncio.wait_for(fut, timeout=self._timeout_s)
        except Exception as exc:
            log.error(
                "dead letter of a partials record not acknowledged; stopping to read it again",
                extra={"fields": {"partition": partition, "error": repr(exc)}},
            )
            return exc
        return None

    def evaluation_failures(self, detector: object) -> None:
        """Count the evaluations of ``detector`` that raised (it went on with the other
        models) and log them, at most once per :data:`LOG_INTERVAL_S`."""
        take = getattr(detector, "take_failures", None)
        failures = take() if take is not None else []
        if not failures:
            return
        self._m.evaluation_failures.inc(len(failures))
        if self._log_limit("evaluation", now_s=self._clock()):
            first = failures[0]
            log.error(
                "evaluating a model failed; its bucket was skipped, the other models went on",
                extra={
                    "fields": {
                        "model": first.model,
                        "bucket_end_ms": first.bucket_end_ms,
                        "error": first.error,
                        "failures": len(failures),
                    }
                },
            )
