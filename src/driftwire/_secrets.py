"""Secret values known to this process, and the redaction every output path applies.

Settings register their secrets when loaded (:func:`driftwire.ops.config.load_settings`); the
JSON log formatter, the CLI's error line and the bridges' delivery messages pass text through
:func:`redact` before it leaves the process. A URL secret (a Slack webhook) is also known by its
path and its password, since an HTTP library may quote only part of a URL.

>>> redactor = Redactor(["hunter2-secret", "https://hooks.example/services/T0/B0/XYZW"])
>>> redactor.redact("login failed for hunter2-secret at /services/T0/B0/XYZW")
'login failed for *** at ***'
>>> redactor.redact("nothing secret here")
'nothing secret here'
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

__all__ = ["MASK", "Redactor", "known", "redact", "register"]

MASK = "***"
MIN_LENGTH = 4  # shorter values ("a", "on") would mask ordinary words; refuse none, mask these


def _variants(secret: str) -> set[str]:
    found = {secret, quote(secret, safe=""), quote(secret, safe="/:@"), unquote(secret)}
    if "://" in secret:
        parts = urlsplit(secret)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(path.strip("/")) >= MIN_LENGTH:
            found.add(path)
        if parts.password:
            found.add(parts.password)
    return {v for v in found if len(v) >= MIN_LENGTH}


class Redactor:
    """Replaces every known secret (and its URL-quoted forms) in a text with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._ordered: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret:
                self._values |= _variants(secret)
        self._ordered = sorted(self._values, key=len, reverse=True)  # longest first

    def values(self) -> frozenset[str]:
        """Every masked string (each secret and its variants)."""
        return frozenset(self._values)

    def __bool__(self) -> bool:
        return bool(self._ordered)

    def redact(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        return text


_PROCESS = Redactor()
_LOCK = threading.Lock()


def register(secrets: Iterable[str]) -> None:
    """Make ``secrets`` known to :func:`redact` for the rest of the process."""
    with _LOCK:
        _PROCESS.add(secrets)


def known() -> Redactor:
    return _PROCESS


def redact(text: str) -> str:
    """``text`` with every registered secret masked."""
    return _PROCESS.redact(text)
