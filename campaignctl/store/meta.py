"""Typed accessors for the `meta` table: small key/value state shared between processes.

The keys and the text of their values are part of the database format (existing databases keep
working): `daemon.FIELD` (the heartbeat), `sync.CHANNEL.cursor` and `sync.CHANNEL.last_at`,
`blast.NAME.enrolled`, `campaign.NAME.completed`, `audience.NAME.skipped` (JSON count and
reason), `breaker.CHANNEL` (a circuit breaker's JSON), `warmup.CHANNEL.first_send` (ISO: when a
warming-up channel first sent), `needs_person.CHANNEL` (JSON message and hint of a channel the
daemon stopped), `suppression.key` (the hex key the suppression list's hashes are made with:
a copied database keeps it) and `enrol_on.NAME.cursor` (the last journal id an `enrol_on`
sequence has read). Only this module spells them.
"""

from __future__ import annotations

from datetime import datetime

from campaignctl.store.conn import Conn, Readable, connection, dialect_of
from campaignctl.store.reader import reader


def _get(conn: Readable, key: str) -> str | None:
    value = reader(conn).value("SELECT value FROM meta WHERE key = ?", key)
    return None if value is None else str(value)


def _put(conn: Conn, key: str, value: str | None, now: datetime) -> None:
    """Store `value` under `key`, or remove the key when `value` is None."""
    from campaignctl.store.tables import META

    if value is None:
        connection(conn).execute(META.delete().where(META.c.key == key))
    else:
        _set(conn, key, value, now)


def _set(conn: Conn, key: str, value: str, now: datetime) -> None:
    from campaignctl.store.tables import META

    stmt = dialect_of(conn).upsert(META, "key", {"key": key, "value": value, "updated_at": now})
    connection(conn).execute(stmt)


def _set_once(conn: Conn, key: str, value: str, now: datetime) -> str:
    """Store `value` under `key` unless another process stored one first; the value kept.
    (An insert that a unique key refuses: the first writer wins on every database.)"""
    from campaignctl.store.tables import META

    c = connection(conn)
    c.execute(dialect_of(c).insert_ignore(META), [{"key": key, "value": value, "updated_at": now}])
    kept = _get(conn, key)
    assert kept is not None
    return kept


def _like(conn: Readable, prefix: str, suffix: str) -> dict[str, str]:
    """{middle: value} for the keys `prefix` + middle + `suffix`."""
    rows = reader(conn).rows("SELECT key, value FROM meta WHERE key LIKE ?", f"{prefix}%{suffix}")
    return {str(k)[len(prefix) : len(k) - len(suffix)]: str(v) for k, v in rows}


# ---------------------------------------------------------------- the daemon's heartbeat


def heartbeat(conn: Readable) -> dict[str, str]:
    """The daemon's heartbeat fields as written (pid, started_at, last_pass_at, ...)."""
    return _like(conn, "daemon.", "")


def set_heartbeat(conn: Conn, values: dict[str, str], now: datetime) -> None:
    for field, value in values.items():
        _set(conn, f"daemon.{field}", value, now)


# ---------------------------------------------------------------- sync


def cursor(conn: Readable, channel: str) -> str | None:
    """Where the last sync of `channel` stopped (a Gmail historyId, a date), or None."""
    return _get(conn, f"sync.{channel}.cursor")


def set_cursor(conn: Conn, channel: str, value: str, now: datetime) -> None:
    _set(conn, f"sync.{channel}.cursor", value, now)


def last_syncs(conn: Readable) -> dict[str, str]:
    """channel -> ISO time of its last successful sync."""
    return _like(conn, "sync.", ".last_at")


def set_last_sync(conn: Conn, channel: str, now: datetime) -> None:
    _set(conn, f"sync.{channel}.last_at", now.isoformat(), now)


# ---------------------------------------------------------------- campaigns


def blast_enrolled(conn: Readable, campaign: str) -> str | None:
    """When a blast enrolled its audience (ISO), or None: a blast enrols once."""
    return _get(conn, f"blast.{campaign}.enrolled")


def set_blast_enrolled(conn: Conn, campaign: str, now: datetime) -> None:
    _set(conn, f"blast.{campaign}.enrolled", now.isoformat(), now)


def enrol_on_cursor(conn: Readable, campaign: str) -> int:
    """The last journal id an `enrol_on` sequence has read (0: none yet)."""
    value = _get(conn, f"enrol_on.{campaign}.cursor")
    return int(value) if value is not None else 0


def set_enrol_on_cursor(conn: Conn, campaign: str, journal_id: int, now: datetime) -> None:
    _set(conn, f"enrol_on.{campaign}.cursor", str(journal_id), now)


def blasts_enrolled(conn: Readable) -> set[str]:
    """The blasts that have enrolled their audience."""
    return set(_like(conn, "blast.", ".enrolled"))


def campaign_completed(conn: Readable, campaign: str) -> str | None:
    """When a blast completed (ISO), or None."""
    return _get(conn, f"campaign.{campaign}.completed")


def set_campaign_completed(conn: Conn, campaign: str, now: datetime) -> None:
    _set(conn, f"campaign.{campaign}.completed", now.isoformat(), now)


def completed_campaigns(conn: Readable) -> set[str]:
    return set(_like(conn, "campaign.", ".completed"))


def set_audience_skipped(conn: Conn, campaign: str, value: str | None, now: datetime) -> bool:
    """The JSON count and reason of leads the audience could not be evaluated for (None
    clears it). True when it differs from what was stored (`send --quiet` warns only then)."""
    key = f"audience.{campaign}.skipped"
    changed = value is not None and _get(conn, key) != value
    _put(conn, key, value, now)
    return changed


def audience_skipped(conn: Readable) -> dict[str, str]:
    """campaign -> the JSON written by `set_audience_skipped`."""
    return _like(conn, "audience.", ".skipped")


# ---------------------------------------------------------------- circuit breakers


def breaker(conn: Readable, channel: str) -> str | None:
    """A channel's circuit breaker as stored (JSON), or None when it never tripped."""
    return _get(conn, f"breaker.{channel}")


def set_breaker(conn: Conn, channel: str, value: str, now: datetime) -> None:
    _set(conn, f"breaker.{channel}", value, now)


# ---------------------------------------------------------------- warm-up


def warmup_start(conn: Readable, channel: str) -> datetime | None:
    """When `channel` first sent, as recorded for its warm-up, or None."""
    value = _get(conn, f"warmup.{channel}.first_send")
    return None if value is None else datetime.fromisoformat(value)


def set_warmup_start(conn: Conn, channel: str, first: datetime, now: datetime) -> datetime:
    """Record the channel's first send (once: the warm-up counts its days from it); the one
    kept (another process's, when it recorded one first)."""
    return datetime.fromisoformat(
        _set_once(conn, f"warmup.{channel}.first_send", first.isoformat(), now)
    )


# ---------------------------------------------------------------- channels that need a person


def needs_person(conn: Readable) -> dict[str, str]:
    """channel -> the JSON written by `set_needs_person`."""
    return _like(conn, "needs_person.", "")


def set_needs_person(conn: Conn, channel: str, value: str | None, now: datetime) -> None:
    """Record that the daemon stopped `channel` until a person acts (None clears it)."""
    _put(conn, f"needs_person.{channel}", value, now)


# ---------------------------------------------------------------- the suppression list's key


def suppression_key(conn: Readable) -> bytes | None:
    """The key the suppression list's address hashes are made with, or None before the first
    address was suppressed (nothing is suppressed then)."""
    value = _get(conn, "suppression.key")
    return None if value is None else bytes.fromhex(value)


def ensure_suppression_key(conn: Conn, now: datetime) -> bytes:
    """The suppression key, made (32 random bytes) and kept on first use; call it in a write
    transaction, so two processes never make two keys."""
    import secrets

    key = suppression_key(conn)
    if key is None:  # the first writer's key is kept: every hash is made with one key
        key = bytes.fromhex(_set_once(conn, "suppression.key", secrets.token_bytes(32).hex(), now))
    return key


def hook_since(conn: Readable, url: str) -> datetime | None:
    """When the hook posting to `url` was first seen: it hears of events from then on."""
    value = _get(conn, f"hook.since.{url}")
    return datetime.fromisoformat(value) if value else None


def set_hook_since(conn: Conn, url: str, now: datetime) -> None:
    _set(conn, f"hook.since.{url}", now.isoformat(), now)
