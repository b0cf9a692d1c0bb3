"""Structured JSON logs: one object per line on stderr.

>>> import io, logging
>>> stream = io.StringIO()
>>> configure_logging("INFO", stream=stream)
>>> logging.getLogger("driftwire.cli.demo").info("started", extra={"fields": {"partitions": 3}})
>>> '"partitions":3' in stream.getvalue()
True
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson

from driftwire._secrets import redact


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message and its fields.

    Extra fields travel in ``extra={"fields": {...}}`` so they cannot collide with the
    attributes of :class:`logging.LogRecord`.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # every secret the process knows is masked: in a message, a field, an exception text
        return redact(orjson.dumps(_masked(entry), default=str).decode())


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return redact(str(value)) if not isinstance(value, int | float | bool | None) else value


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # a broker that went away: aiokafka's errors once a minute per kind, not dozens a second
    from driftwire.producer._quiet import limit_aiokafka_logging

    limit_aiokafka_logging()


class LogLimiter:
    """Says whether to log a key now: the first time, then at most once per ``interval_s``.

    >>> limit = LogLimiter(600)
    >>> [limit("segments", now_s=t) for t in (0, 10, 599, 600, 700)]
    [True, False, False, True, False]
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def __call__(self, key: str, *, now_s: float) -> bool:
        last = self._last.get(key)
        if last is not None and now_s - last < self.interval_s:
            return False
        self._last[key] = now_s
        return True
