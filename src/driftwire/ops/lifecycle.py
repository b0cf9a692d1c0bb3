"""The lifecycle of a long-running part: not started -> running -> stopped, once.

The stages and bridges run once (``await run(stop)``); a second ``run`` or a client used
before ``run`` created it is a programming error that must fail loudly, also under
``python -O`` (which removes ``assert``).

>>> life = Lifecycle("profile stage")
>>> life.start()
>>> life.stop()
>>> life.start()
Traceback (most recent call last):
...
driftwire.errors.LifecycleError: the profile stage was started already (stopped); it runs once
>>> raise life.not_started("consumer")
Traceback (most recent call last):
...
driftwire.errors.LifecycleError: the profile stage's consumer is used before run() created it
"""

from __future__ import annotations

from typing import Literal

from driftwire.errors import LifecycleError

Phase = Literal["not started", "running", "stopped"]


class Lifecycle:
    """The phase of one long-running part, named ``name`` in the errors."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.phase: Phase = "not started"

    def start(self) -> None:
        """Enter ``running``; a part that ran already refuses."""
        if self.phase != "not started":
            raise LifecycleError(
                f"the {self.name} was started already ({self.phase}); it runs once"
            )
        self.phase = "running"

    def stop(self) -> None:
        self.phase = "stopped"

    def not_started(self, what: str) -> LifecycleError:
        """The error for ``what`` (a client, a topic) used before ``run()`` created it."""
        return LifecycleError(f"the {self.name}'s {what} is used before run() created it")
