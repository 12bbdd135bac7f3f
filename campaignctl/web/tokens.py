"""Signed tokens for the links campaignctl hands out: unsubscribe, click, open, and the undo.

A token is itsdangerous' URL-safe serialisation of a small JSON payload, signed (HMAC-SHA256)
with a salt per purpose, so a click token can never be used as an unsubscribe token. Tokens
never expire: a recipient may unsubscribe from a years-old email (RFC 8058 links must keep
working). Except the undo's (`Purpose.UNDO`): the unsubscribe page's "Subscribe again" button
carries a timed token (`dumps_at`/`loads_timed`, itsdangerous' `URLSafeTimedSerializer`) that
the page checks against `UNDO_FOR`. Its timestamp is the caller's clock, never `time.time()`:
time is a parameter. Keys rotate: the first key signs, every key verifies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer

#: How long the unsubscribe page's "Subscribe again" works after the unsubscribe it takes
#: back. A click by mistake is noticed at once, or at the latest the same day (a day covers a
#: page left open overnight, in any time zone); after that, someone who wants the messages
#: again asks the sender, as after a STOP reply. Bounded because the undo token re-subscribes
#: whoever holds it (a page left open on a shared screen, a saved or forwarded copy): a day is
#: as long as a "stop" may stay that easy to take back.
UNDO_FOR = timedelta(hours=24)


class Purpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    CLICK = "click"
    OPEN = "open"
    UNDO = "undo"  # timed: `Signer.dumps_at`, `Signer.loads_timed`


#: The purposes whose tokens carry a timestamp.
TIMED = frozenset({Purpose.UNDO})


class _AtSigner(TimestampSigner):
    """itsdangerous' timestamp signer with the time given (`at`, epoch seconds) instead of
    read from `time.time()`; verifying never reads a time (no `max_age`: the caller compares
    the timestamp against its own clock)."""

    def __init__(self, *args: Any, at: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at = at

    def get_timestamp(self) -> int:
        if self.at is None:
            raise RuntimeError("a timed token is signed at a given time (Signer.dumps_at)")
        return self.at


class Signer:
    """Signs and verifies tokens with `keys` (the first signs; all verify)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys or not all(keys):
            raise ValueError("at least one non-empty signing key is needed")
        # itsdangerous signs with the LAST key of the list and verifies with every one
        self._keys = list(reversed(keys))
        self._by_purpose: dict[Purpose, URLSafeSerializer] = {}

    def _serializer(self, purpose: Purpose) -> URLSafeSerializer:
        if purpose in TIMED:
            raise ValueError(f"{purpose.value} tokens are timed: use dumps_at and loads_timed")
        s = self._by_purpose.get(purpose)
        if s is None:
            s = self._by_purpose[purpose] = URLSafeSerializer(
                self._keys,
                salt=f"campaignctl.{purpose.value}",
                signer_kwargs={"digest_method": hashlib.sha256},
            )
        return s

    def dumps(self, purpose: Purpose, payload: Any) -> str:
        return str(self._serializer(purpose).dumps(payload))

    def loads(self, purpose: Purpose, token: str) -> Any | None:
        """The payload, or None when the token is malformed, tampered with or signed by an
        unknown key (or for another purpose)."""
        try:
            return self._serializer(purpose).loads(token)
        except (BadSignature, UnicodeError, ValueError):
            return None

    def _timed(self, purpose: Purpose, at: int | None) -> URLSafeTimedSerializer:
        if purpose not in TIMED:
            raise ValueError(f"{purpose.value} tokens never expire: use dumps and loads")
        return URLSafeTimedSerializer(
            self._keys,
            salt=f"campaignctl.{purpose.value}",
            signer=_AtSigner,
            signer_kwargs={"digest_method": hashlib.sha256, "at": at},
        )

    def dumps_at(self, purpose: Purpose, payload: Any, at: datetime) -> str:
        """A timed token for `payload`, stamped `at` (whole seconds)."""
        return str(self._timed(purpose, int(at.timestamp())).dumps(payload))

    def loads_timed(self, purpose: Purpose, token: str) -> tuple[Any, datetime] | None:
        """(payload, when it was signed) of a timed token, or None as for `loads`. How old
        is too old is the caller's to say, against its own clock."""
        try:
            payload, signed_at = self._timed(purpose, None).loads(token, return_timestamp=True)
        except (BadSignature, ValueError, OverflowError, OSError):
            return None
        return payload, signed_at


def redact(segment: str) -> str:
    """A path segment as logs show it: one longer than 16 characters (a token) cut to its
    first 10, enough to match two log lines, never enough to use it."""
    return segment if len(segment) <= 16 else segment[:10] + "…"
