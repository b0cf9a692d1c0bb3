"""The one error root of driftwire and its families.

Callers that must decide whether to retry look at ``retriable`` (as aiokafka does).
"""

from __future__ import annotations

from collections.abc import Mapping

#: In a :attr:`ConfigError.suggestion`: remove this key.
REMOVE = "<remove>"


class DriftwireError(Exception):
    """Root of every error driftwire raises on purpose."""

    retriable: bool = False


class ConfigError(DriftwireError):
    """A configuration value is missing, unknown or of the wrong type.

    ``key`` is the dotted path of the offending key (``kafka.bootstrap_servers``), so the
    message a user sees names exactly what to fix.
    """

    def __init__(
        self,
        key: str,
        problem: str,
        fix: str | None = None,
        *,
        suggestion: Mapping[str, object] | None = None,
    ) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        #: ``{dotted key: value}`` that, set in the file, makes it valid (:data:`REMOVE`
        #: drops a key); ``fix`` says the same in words. Tests apply every suggestion.
        self.suggestion: dict[str, object] = dict(suggestion or {})
        text = f"config error at '{key}': {problem}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class InputError(DriftwireError):
    """Input data (an event, a baseline file, serialized state) cannot be used."""


class FormatError(InputError):
    """Serialized state has an unknown format version or incompatible sketch parameters."""


class TransportError(DriftwireError):
    """Talking to the broker failed."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class AuthorizationError(TransportError):
    """The broker refused an operation because the principal lacks an ACL.

    ``needs`` says which, as the rest of the sentence "it needs ...": e.g. ``Write on topic
    X (...)``; the process ends with it as one line, without retry.
    """

    def __init__(self, needs: str) -> None:
        super().__init__(f"not authorized: it needs {needs}", retriable=False)
        self.needs = needs


class BrokerSetupError(TransportError):
    """The broker lacks something the configuration needs (e.g. a transaction coordinator for
    ``processing.guarantee: exactly_once``); retrying cannot help, so the process ends with the
    message, which names the fix, as one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class LifecycleError(DriftwireError, RuntimeError):
    """A long-running part was used in the wrong phase: run twice, or used before it started.

    A :class:`RuntimeError` too, as misuse of a started client is in asyncio and aiokafka.
    """
