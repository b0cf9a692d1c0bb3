"""Rate-limit aiokafka's repeated connection errors: one line per kind of message a minute.

With its broker unreachable, aiokafka logs an error for every connection attempt (about once
a second from a producer, dozens a second from a consumer group member), which floods a model
server's log and hides everything else. :class:`RepeatLimiter` lets the first record of each
message template through, holds back the same template for ``interval_s``, and says on the
next one how many it held back. Records below WARNING are not touched.

>>> import logging
>>> clock = iter([0.0, 1.0, 2.0, 61.0]).__next__
>>> limiter = RepeatLimiter(60.0, clock=clock)
>>> def record(port):
...     msg = "Unable connect to %s"
...     return logging.LogRecord("aiokafka", logging.ERROR, "", 0, msg, (port,), None)
>>> [limiter.filter(record(p)) for p in (1, 2, 3)]
[True, False, False]
>>> kept = record(4); limiter.filter(kept), kept.getMessage()
(True, 'Unable connect to 4 (2 more like it held back in the last 60 s)')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: aiokafka's loggers that report connection trouble (a filter acts on its own logger only)
AIOKAFKA_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.admin.client",
)
INTERVAL_S = 60.0


class RepeatLimiter(logging.Filter):
    """Pass one WARNING-or-worse record per (logger, message template) every ``interval_s``."""

    def __init__(
        self, interval_s: float = INTERVAL_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # loggers are shared by threads

    def reset(self) -> None:
        """Forget what was seen: the next record of every template passes."""
        with self._lock:
            self._last.clear()
            self._held.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = (
                f"{record.msg} ({held} more like it held back in the last {self.interval_s:g} s)"
            )
        return True


_installed: RepeatLimiter | None = None
_install_lock = threading.Lock()


def limit_aiokafka_logging() -> RepeatLimiter:
    """Install one shared :class:`RepeatLimiter` on aiokafka's loggers (once per process)."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = RepeatLimiter()
            for name in AIOKAFKA_LOGGERS:
                logging.getLogger(name).addFilter(_installed)
        return _installed
