"""Outgoing hooks: each event a `[[hooks]]` entry asks for is POSTed to its URL as signed JSON,
at least once, in order per lead, retried with backoff until a 2xx (docs/web.md, "Outgoing
hooks").

Queuing is durable and happens where the fact is recorded:
- `sent` and `failed` are queued by the engine, in the transaction that records the outcome
  (`rows_for`, through `Writes.hook`);
- every other event (delivered, undelivered, replied, optout, bounced, clicked, opened) is an
  `event` row, whichever door it came through (`sync`, Twilio's webhooks, the unsubscribe page,
  a tracked click, `leads optout`); `queue_events` turns the rows not looked at yet into queue
  rows and marks them, in one transaction, so each is queued exactly once.
A hook only hears of what happened after it was first seen (`meta`): adding a hook does not
replay the past.

`deliver` POSTs what is due: the oldest undelivered row of each (hook, lead), leased first so
two daemons never post the same row at once. Each POST carries:
- `Idempotency-Key`: the same fact always has the same key (a receiver drops repeats);
- `X-Campaignctl-Event`: the event's name;
- `X-Campaignctl-Signature: t=UNIX,v1=HEX`: HMAC-SHA256 of `t.` + the body, with the hook's key
  (its `secret_env`, else the server's signing key). A receiver checks it and refuses old `t`.
The body is built from the rows as they are at each attempt (never stored), so an erased lead is
never announced with its old address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from campaignctl import __version__
from campaignctl.config import Config
from campaignctl.config.model import Hook
from campaignctl.pacing import retry_delay
from campaignctl.store import Store, meta
from campaignctl.store import hooks as store_hooks
from campaignctl.store.conn import Transaction

#: Event kinds of the `event` table, and the hook event each one is.
EVENT_HOOKS = {
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "reply": "replied",
    "optout": "optout",
    "bounce": "bounced",
    "click": "clicked",
    "open": "opened",
}
#: First retry after this; doubled each time, with jitter, up to `MAX_BACKOFF`.
BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
#: How long one POST may take, and how long its lease lasts (longer, so it never expires
#: while the POST is in flight).
TIMEOUT = 10.0
LEASE = timedelta(seconds=60)
#: Events looked at per transaction by `queue_events`.
BATCH = 500
#: Seconds `send`, `sync` and each daemon tick spend posting at most (a POST in flight ends).
BUDGET = 5.0


def hook_key(cfg: Config, hook: Hook, environ: Mapping[str, str]) -> str | None:
    """The HMAC key of `hook`: its own `secret_env`'s first variable, else the server's first
    signing key; None when neither is set."""
    names = hook.secret_env or (cfg.server.secret_env if cfg.server else None)
    if not names:
        return None
    return environ.get(names.split(",")[0]) or None


def key_problems(cfg: Config, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key path, what is wrong) for each hook whose key is not in this environment."""
    out = []
    for i, hook in enumerate(cfg.hooks):
        if hook_key(cfg, hook, environ) is None:
            name = (hook.secret_env or (cfg.server.secret_env if cfg.server else "")).split(",")[0]
            why = (
                f"environment variable {name} is not set: each POST is signed with it"
                if name
                else "no key to sign with: set secret_env here, or add [server] with its own"
            )
            out.append((f"hooks[{i}].secret_env", why))
    return out


def _subscribers(cfg: Config, event: str) -> list[Hook]:
    return [h for h in cfg.hooks if event in h.events]


def rows_for(
    cfg: Config,
    event: str,
    *,
    lead_id: int,
    message_id: int | None,
    occurred_at: datetime,
    now: datetime,
    event_id: int | None = None,
) -> list[dict[str, Any]]:
    """Queue rows for `event` (one per hook that wants it), keyed so that the same fact is
    queued once: a message's `sent`/`failed`, or an `event` row."""
    key = f"event:{event_id}" if event_id is not None else f"message:{message_id}:{event}"
    return [
        {
            "hook": h.url,
            "event": event,
            "idem_key": key,
            "lead_id": lead_id,
            "message_id": message_id,
            "event_id": event_id,
            "occurred_at": occurred_at,
            "created_at": now,
            "attempts": 0,
            "next_at": now,
        }
        for h in _subscribers(cfg, event)
    ]


def _since(store_conn: Transaction, cfg: Config, now: datetime) -> dict[str, datetime]:
    """When each hook was first seen (recorded now for a new one)."""
    out = {}
    for h in cfg.hooks:
        since = meta.hook_since(store_conn, h.url)
        if since is None:
            meta.set_hook_since(store_conn, h.url, now)
            since = now
        out[h.url] = since
    return out


def queue_events(store: Store, cfg: Config, now: datetime) -> int:
    """Queue the hooks' share of the events recorded since the last call; how many rows were
    queued. Without hooks, events are only marked (so adding a hook does not replay them)."""
    queued = 0
    while True:
        with store.write() as session:
            since = _since(session, cfg, now)
            events = store_hooks.unhooked_events(session, BATCH)
            if not events:
                return queued
            rows: list[dict[str, Any]] = []
            for e in events:
                name = EVENT_HOOKS.get(e.kind)
                if name is None or e.lead_id is None or (e.detail or {}).get("machine"):
                    continue  # not announced: optin, help, autoreply, a machine's click
                for row in rows_for(
                    cfg,
                    name,
                    lead_id=e.lead_id,
                    message_id=e.message_id,
                    occurred_at=e.occurred_at,
                    now=now,
                    event_id=e.id,
                ):
                    if e.recorded_at >= since[row["hook"]]:
                        rows.append(row)
            store_hooks.queue(session, rows)
            store_hooks.mark_hooked(session, [e.id for e in events])
            queued += len(rows)


# ---------------------------------------------------------------- delivery


def sign(key: str, body: bytes, timestamp: int) -> str:
    """The `X-Campaignctl-Signature` value: `t=UNIX,v1=HEX`, HEX being HMAC-SHA256 over
    `UNIX.` and the body."""
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(key: str, body: bytes, header: str, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (documented, and used by the tests): the signature matches and
    its time is within `tolerance` seconds of `now`."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(key, body, t).split("v1=", 1)[1]
    return abs(now - t) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


def body_of(row: Any, lead: Any, message: Any, event: Any) -> bytes:
    """The JSON posted for a queued row, from the rows as they are now."""
    doc: dict[str, Any] = {
        "id": row.idem_key,
        "event": row.event,
        "occurred_at": _iso(row.occurred_at),
        "lead": None
        if lead is None
        else {
            "id": lead.id,
            "email": lead.email,
            "phone": lead.phone,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
        },
        "message": None
        if message is None
        else {
            "id": message.id,
            "campaign": message.campaign,
            "step": message.step,
            "channel": message.channel,
            "variant": message.variant,
            "provider_id": message.provider_id,
            "sent_at": _iso(message.sent_at),
        },
    }
    if event is not None:
        doc["channel"] = event.channel
        doc["detail"] = event.detail or {}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str).encode()


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.isoformat().replace("+00:00", "Z") if t.tzinfo else t.isoformat() + "Z"


Post = Callable[[str, bytes, dict[str, str], float], int]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST with the standard library; the status code (no redirect is followed)."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener().open(req, timeout=timeout) as res:
            return int(res.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer, not a 2xx: retried, never followed


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect)


@dataclass
class Delivered:
    """What one `deliver` call did."""

    delivered: int = 0
    failed: int = 0
    errors: list[str] | None = None


def deliver(
    store: Store,
    cfg: Config,
    environ: Mapping[str, str],
    now: Callable[[], datetime],
    *,
    rng: random.Random,
    post: Post = http_post,
    budget: float = BUDGET,
    limit: int = 200,
) -> Delivered:
    """POST what is due, for at most `budget` seconds (the daemon's other jobs share its
    thread). A 2xx marks the row delivered; anything else (another status, a timeout, a
    refused connection) schedules a retry with backoff and keeps the lead's later rows
    waiting behind it."""
    result = Delivered(errors=[])
    keys = {h.url: hook_key(cfg, h, environ) for h in cfg.hooks}
    hooks = [url for url, key in keys.items() if key]
    started = time.monotonic()
    with store.read() as session:
        rows = store_hooks.due(session, hooks, now(), limit)
    for row in rows:
        if time.monotonic() - started > budget:
            break
        t = now()
        with store.write() as session:
            if not store_hooks.lease(session, row.id, t, t + LEASE):
                continue  # another daemon has it
            lead, message, event = store_hooks.body_rows(session, row)
        body = body_of(row, lead, message, event)
        key = keys[row.hook]
        assert key is not None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"campaignctl/{__version__} (hooks)",
            "Idempotency-Key": row.idem_key,
            "X-Campaignctl-Event": row.event,
            "X-Campaignctl-Signature": sign(key, body, int(t.timestamp())),
        }
        error = None
        try:
            status = post(row.hook, body, headers, TIMEOUT)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (OSError, ValueError) as exc:  # refused, timed out, DNS, TLS
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        done = now()
        with store.write() as session:
            if error is None:
                store_hooks.delivered(session, row.id, done)
                result.delivered += 1
            else:
                wait = retry_delay(row.attempts + 1, BACKOFF, rng, cap=MAX_BACKOFF)
                store_hooks.failed(session, row.id, done + wait, error)
                result.failed += 1
                assert result.errors is not None
                result.errors.append(f"{row.hook}: {row.event} {row.idem_key}: {error}")
    return result


@dataclass
class Posted:
    """What `post_due` did: the hooks whose key is missing (their events wait), and the POSTs."""

    missing_keys: list[tuple[str, str]]
    done: Delivered


def post_due(
    store: Store,
    cfg: Config,
    environ: Mapping[str, str],
    now: Callable[[], datetime],
    *,
    rng: random.Random,
    budget: float = BUDGET,
) -> Posted | None:
    """Queue the hooks' share of the events recorded since, then POST what is due for at most
    `budget` seconds: what each daemon tick does, and `send` and `sync` at their end (so that
    cron alone posts them). None when the campaign file has no hooks: nothing is read or
    written then (the events recorded meanwhile are looked at once a hook is added, and only
    those after it was first seen are queued)."""
    if not cfg.hooks:
        return None
    queue_events(store, cfg, now())
    missing = key_problems(cfg, environ)
    return Posted(missing, deliver(store, cfg, environ, now, rng=rng, budget=budget))
