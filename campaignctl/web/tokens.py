"""Signed tokens for the links campaignctl hands out: unsubscribe, click, open.

A token is itsdangerous' URL-safe serialisation of a small JSON payload, signed (HMAC-SHA256)
with a salt per purpose, so a click token can never be used as an unsubscribe token. Tokens
never expire: a recipient may unsubscribe from a years-old email (RFC 8058 links must keep
working). Keys rotate: the first key signs, every key verifies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer


class Purpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    CLICK = "click"
    OPEN = "open"


class Signer:
    """Signs and verifies tokens with `keys` (the first signs; all verify)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys or not all(keys):
            raise ValueError("at least one non-empty signing key is needed")
        # itsdangerous signs with the LAST key of the list and verifies with every one
        self._keys = list(reversed(keys))
        self._by_purpose: dict[Purpose, URLSafeSerializer] = {}

    def _serializer(self, purpose: Purpose) -> URLSafeSerializer:
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


def redact(segment: str) -> str:
    """A path segment as logs show it: one longer than 16 characters (a token) cut to its
    first 10, enough to match two log lines, never enough to use it."""
    return segment if len(segment) <= 16 else segment[:10] + "…"
