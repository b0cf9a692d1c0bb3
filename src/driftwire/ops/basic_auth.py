"""HTTP basic authentication against bcrypt hashes, with verified credentials remembered.

bcrypt is slow on purpose (tens of milliseconds at cost 10), so a Prometheus scraping every
15 s must not pay it on every scrape: the outcome of a check is remembered under a keyed
digest of (user, password, hash), never the password itself, in a small bounded cache. An
unknown user costs a bcrypt check as well, so that timing does not tell which users exist.

>>> import bcrypt
>>> auth = BasicAuth({"prom": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4))})
>>> auth.check(basic_header("prom", "s3cret")), auth.check(basic_header("prom", "wrong"))
(True, False)
>>> auth.check(None), auth.check("Bearer abc"), auth.check(basic_header("eve", "s3cret"))
(False, False, False)
>>> auth.cached(basic_header("prom", "s3cret"))
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt

__all__ = ["CHALLENGE", "BasicAuth", "basic_header", "parse_basic"]

#: The ``WWW-Authenticate`` value of a 401.
CHALLENGE = 'Basic realm="driftwire", charset="UTF-8"'


def basic_header(user: str, password: str) -> str:
    """The ``Authorization`` value for ``user`` and ``password``."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) of a ``Basic`` ``Authorization`` header; None when it is not one.

    >>> parse_basic(basic_header("a", "b:c"))
    ('a', 'b:c')
    >>> parse_basic("Basic !!!") is None, parse_basic("Basic " + "Zm9v") is None
    (True, True)
    """
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class BasicAuth:
    """Checks ``Authorization`` headers against ``users`` (user name → bcrypt hash)."""

    def __init__(self, users: Mapping[str, bytes], cache_size: int = 256) -> None:
        if not users:
            raise ValueError("BasicAuth needs at least one user")
        self._users = dict(users)
        self._decoy = next(iter(self._users.values()))  # what an unknown user is checked with
        self._key = secrets.token_bytes(32)  # keys the cache: no password digest to reverse
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_size = cache_size

    def _slot(self, user: str, password: str, hashed: bytes) -> bytes:
        message = b"\0".join((user.encode(), password.encode(), hashed))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def cached(self, header: str | None) -> bool | None:
        """The remembered outcome for ``header``, or None when it needs a bcrypt check.

        A header that is no basic credential at all is refused without one.
        """
        found = parse_basic(header)
        if found is None:
            return False
        user, password = found
        hashed = self._users.get(user, self._decoy)
        return self._cache.get(self._slot(user, password, hashed))

    def check(self, header: str | None) -> bool:
        """Whether ``header`` carries a known user and that user's password (may run bcrypt)."""
        found = parse_basic(header)
        if found is None:
            return False
        user, password = found
        known = user in self._users
        hashed = self._users.get(user, self._decoy)
        slot = self._slot(user, password, hashed)
        outcome = self._cache.get(slot)
        if outcome is None:
            try:
                matches = bcrypt.checkpw(password.encode(), hashed)
            except ValueError:  # a password over bcrypt's 72 bytes
                matches = False
            outcome = matches and known  # bcrypt compares in constant time; a decoy never passes
            self._cache[slot] = outcome
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return outcome
