"""The Faust app's own ACLs: checked before it starts, watched while it runs.

faust-streaming does not fail on a missing ACL of its own: without Read on its consumer group
``app.start()`` waits for a coordinator for ever, and a refused read or write of its state
changelog is a warning in the log while the app carries on without its state. So the detect
stage asks the broker first (the group's coordinator; for a changelog that does not exist yet,
a validate-only creation), and while the app runs, :class:`AuthorizationWatch` turns the
warnings faust and aiokafka log for a refused read or write of one of the app's topics into
an :class:`~driftwire.errors.AuthorizationError` that ends the stage with one line.

>>> failures = []
>>> watch = AuthorizationWatch("g", failures.append)
>>> watch.emit(logging.makeLogRecord({"msg": "Not authorized to read from topic g-log."}))
>>> watch.emit(logging.makeLogRecord({"msg": "Not authorized to read from topic other."}))
>>> for failure in failures:
...     print(failure.needs)
Read on topic g-log (the detect stage's Faust app: the prefixed ACLs on g)
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError

from driftwire.errors import AuthorizationError

#: What faust and aiokafka log when the broker refuses one of the app's reads or writes.
WATCHED_LOGGERS = ("faust.topics", "aiokafka.consumer.fetcher", "aiokafka.producer.sender")
_TOPIC_AUTHORIZATION = 29
_READ = re.compile(r"Not authorized to read from topic (\S+?)\.?$")
_WRITE = re.compile(r"TopicAuthorizationFailedError: (\S+)")


def _why(app_id: str) -> str:
    return f"(the detect stage's Faust app: the prefixed ACLs on {app_id})"


async def check_app_access(
    admin: AIOKafkaAdminClient,
    app_id: str,
    changelog: str,
    *,
    exists: bool,
    partitions: int,
    replication: int,
    coordinator_wait_s: float = 60.0,
) -> None:
    """Raise :class:`AuthorizationError` if the broker refuses the app's group or, when the
    changelog does not exist yet, its creation."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + coordinator_wait_s
    while True:
        try:
            await admin.find_coordinator(app_id)
            break
        except GroupAuthorizationFailedError:
            raise AuthorizationError(f"Read on group {app_id} {_why(app_id)}") from None
        except KafkaError as exc:  # a fresh cluster elects its group coordinators first
            if not exc.retriable or loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
    if exists:
        return
    response = await admin.create_topics(
        [NewTopic(changelog, partitions, replication)], validate_only=True
    )
    for name, code, *_ in getattr(response, "topic_errors", ()):
        if code == _TOPIC_AUTHORIZATION:
            raise AuthorizationError(f"Create on topic {name} {_why(app_id)}")


class AuthorizationWatch(logging.Handler):
    """Calls ``failed`` with an :class:`AuthorizationError` for each refused read or write of
    a topic of the app (its name starts with ``app_id``) that the watched loggers report."""

    def __init__(self, app_id: str, failed: Callable[[AuthorizationError], None]) -> None:
        super().__init__(logging.WARNING)
        self._app_id = app_id
        self._failed = failed
        self.refused = False

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        for pattern, operation in ((_READ, "Read"), (_WRITE, "Write")):
            found = pattern.search(text)
            if found and found.group(1).startswith(self._app_id):
                needs = f"{operation} on topic {found.group(1)} {_why(self._app_id)}"
                if not self.refused:  # from now on, the tracebacks of the refused sends go
                    logging.getLogger("asyncio").addFilter(_ReportedRefusals(self._app_id))
                self.refused = True
                self._failed(AuthorizationError(needs))
                return

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Attached to :data:`WATCHED_LOGGERS` for the duration of the block.

        After a refusal, faust's refused sends stay behind as futures whose error nobody
        reads, and asyncio logs each with a traceback when it is collected (at once or much
        later), besides the one line that says it: from the first refusal on those are dropped
        (the process is ending).
        """
        loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
        for logger in loggers:
            logger.addHandler(self)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeHandler(self)


class _ReportedRefusals(logging.Filter):
    """Drops asyncio's "exception was never retrieved" of a refused send to the app's topics.

    >>> f = _ReportedRefusals("g")
    >>> text = "FutureMessage exception was never retrieved\\nfuture: <FutureMessage finished "
    >>> f.filter(logging.makeLogRecord(
    ...     {"msg": text + "exception=TopicAuthorizationFailedError('g-log')>"}))
    False
    >>> f.filter(logging.makeLogRecord({"msg": text + "exception=KafkaTimeoutError()>"}))
    True
    """

    def __init__(self, app_id: str) -> None:
        super().__init__()
        self._app_id = app_id

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (
            text.startswith("FutureMessage exception was never retrieved")
            and f"TopicAuthorizationFailedError('{self._app_id}" in text
        )
