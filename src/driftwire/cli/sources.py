"""Where the offline commands read inference events from: a JSON Lines file, or a time range of
a topic (``--topic T --since ... --until ...``, a fresh consumer that commits nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from driftwire.alerts.alert import iso
from driftwire.errors import InputError
from driftwire.offline.event_baseline import event_lines
from driftwire.ops.config import Settings
from driftwire.ops.progress import progress_bar


def parse_time(text: str, option: str) -> int:
    """Epoch ms from an RFC 3339 date-time (``2026-01-01T10:00:00Z``) or epoch milliseconds.

    >>> parse_time("2026-01-01T00:00:00Z", "--since"), parse_time("1767225600000", "--until")
    (1767225600000, 1767225600000)
    """
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(
            f"{option} {text!r}: give a date-time with its offset (2026-01-01T10:00:00Z) "
            "or epoch milliseconds"
        )
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class EventSource:
    """A file, or a topic's range of record timestamps ``[since_ms, until_ms)``."""

    file: Path | None = None
    topic: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @property
    def name(self) -> str:
        if self.file is not None:
            return self.file.name
        span = f"{iso(self.since_ms) or 'beginning'} .. {iso(self.until_ms) or 'end'}"
        return f"{self.topic} [{span})"


def event_source(
    file: str | None, topic: str | None, since: str | None, until: str | None
) -> EventSource:
    """The source the options name: exactly one of a file and ``--topic``."""
    if (file is None) == (topic is None):
        raise InputError("give either a file of events or --topic (with --since / --until)")
    if file is not None:
        if since is not None or until is not None:
            raise InputError("--since / --until select a range of --topic; a file is read whole")
        path = Path(file)
        if not path.is_file():
            raise InputError(f"no such file: {file}")
        return EventSource(file=path)
    since_ms = parse_time(since, "--since") if since is not None else None
    until_ms = parse_time(until, "--until") if until is not None else None
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise InputError(f"--until {until} is not after --since {since}")
    return EventSource(topic=topic, since_ms=since_ms, until_ms=until_ms)


def read_events(
    source: EventSource,
    settings: Settings,
    on_batch: Callable[[int, list[bytes]], None],
    on_partitions: Callable[[int], None],
    *,
    what: str,
) -> int:
    """Hand every event of ``source`` to ``on_batch(partition, values)``; returns how many
    raw values were read. ``on_partitions(n)`` is called first."""
    if source.file is not None:
        on_partitions(1)
        read = 0
        with progress_bar(source.file.stat().st_size, what, unit="B") as advance:
            for chunk in event_lines(source.file, advance):
                on_batch(0, chunk)
                read += len(chunk)
        return read
    import logging

    from driftwire.stages.topic_range import read_topic_range

    # aiokafka logs each failed connection attempt; the error below says it in one line
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if source.topic is None:
        raise InputError("no events to read: give a file or --topic")
    with progress_bar(None, what, unit="events") as advance:

        def counted(partition: int, values: list[bytes]) -> None:
            on_batch(partition, values)
            advance(len(values))

        done = asyncio.run(
            read_topic_range(
                settings.kafka.client_options(),
                source.topic,
                since_ms=source.since_ms,
                until_ms=source.until_ms,
                on_batch=counted,
                on_partitions=on_partitions,
            )
        )
    return done.records
