"""Stopping an aiokafka consumer without a stray cancellation, and telling one from a real one.

aiokafka's consumer without a group (``group_id=None``) starts a task as the last step of
``start()`` (its ``NoGroupCoordinator`` resets committed offsets), and ``stop()`` cancels that
task and awaits it. Stopped before that task has run once -- ``start()`` returned and the
caller, told to finish meanwhile, stops at once without giving the event loop a turn -- the
task is cancelled before it entered its ``try``, and ``stop()`` raises ``CancelledError`` in a
task that nobody cancelled. Such a task then ends *cancelled*, which ``asyncio.wait`` with
``FIRST_EXCEPTION`` does not count as a failure and which takes the place of the error that
was being handled: the detect stage's missing-ACL error vanished that way while the worker
waited for ever for its other stage (one run in four on a loaded machine).

:func:`stop_consumer` gives the loop one turn before ``stop()``, so the task is inside its
``try`` when it is cancelled; :func:`cancelled_from_outside` says whether a ``CancelledError``
was meant for the current task.

>>> async def stray() -> bool:
...     victim = asyncio.create_task(asyncio.sleep(1))
...     victim.cancel()
...     try:
...         await victim  # raises CancelledError: the current task was not cancelled
...     except asyncio.CancelledError:
...         return cancelled_from_outside()
>>> asyncio.run(stray())
False
"""

from __future__ import annotations

import asyncio
from typing import Any


def cancelled_from_outside() -> bool:
    """Whether the current task has been asked to cancel (``Task.cancelling()``), as opposed
    to a ``CancelledError`` that leaked out of a task it awaited."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop_consumer(consumer: Any) -> None:
    """``await consumer.stop()`` after one turn of the event loop (see the module docstring);
    a ``CancelledError`` that still leaks out of it is swallowed unless the current task is
    being cancelled."""
    await asyncio.sleep(0)
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        if cancelled_from_outside():
            raise
