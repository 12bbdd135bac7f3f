"""Twilio channel: SMS and WhatsApp through the Messages API, reconciled by listing messages.

Credentials come from the environment (`TWILIO_ACCOUNT_SID` with `TWILIO_AUTH_TOKEN`, or an API
key `TWILIO_API_KEY` + `TWILIO_API_SECRET`; the variable names are channel keys). The client has
no base-URL option (`region`/`edge` only rewrite twilio.com host names), so `api_base` is applied
by an HTTP client that rewrites the scheme and host of every request.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from campaignctl.channels.base import (
    ChannelError,
    CredentialsError,
    ErrorKind,
    Fetched,
    Outgoing,
    Received,
    Reconciled,
    Reconciliation,
    Sent,
)
from campaignctl.channels.providers.twilio import TwilioChannel
from campaignctl.config import Config

T = TypeVar("T")

#: Bad or unreachable numbers: this message fails, the others go on.
BAD_NUMBER_CODES = frozenset({21211, 21214, 21217, 21408, 21612, 21614, 30005, 30006})
OPTED_OUT_CODE = 21610
OUTSIDE_WINDOW_CODE = 63016
WINDOW_HINT = "outside the 24 h window: use a template (content_sid)"
#: How far back reconcile looks at still-queued messages (they have no date_sent yet).
QUEUED_LOOKBACK = 20
#: `reconcile_many` lists what was sent since this long before the earliest lost claim (but
#: never further back than the channel's `give_up_after` before the latest one), reading at
#: most RECONCILE_MAX_PAGES pages of RECONCILE_PAGE_SIZE messages per call: after a long outage
#: a pass must not read (and hold in memory) days of traffic. Lost claims the listing did not
#: reach stay uncertain for the next pass.
RECONCILE_SLACK = timedelta(minutes=10)
RECONCILE_MAX_PAGES = 5
RECONCILE_PAGE_SIZE = 1000
#: A provider's clock may date a message this much before our claim of it (see `_match`).
CLOCK_SLACK = timedelta(minutes=5)
#: `sync`: how far back a first sync looks; how much each later one overlaps the previous
#: (clocks differ, and a message can be dated before it is listed); how far back our own sends
#: are listed for delivery statuses (a carrier may report hours after the send).
FIRST_SYNC_LOOKBACK = timedelta(days=7)
INBOUND_OVERLAP = timedelta(minutes=10)
STATUS_LOOKBACK = timedelta(days=2)
#: `sync` reads at most SYNC_MAX_PAGES list pages of SYNC_PAGE_SIZE messages per channel and run;
#: the cursor then holds the next page, the next `sync` goes on from there, and only when every
#: page is read does the cursor move on to the time that round started.
SYNC_MAX_PAGES = 20
SYNC_PAGE_SIZE = 1000


class ApiBaseHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Sends every request to `api_base` (scheme, host and optional path prefix) instead."""

    def __init__(self, api_base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        base = urlsplit(api_base)
        self._scheme, self._netloc, self._prefix = base.scheme, base.netloc, base.path.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        u = urlsplit(url)
        url = urlunsplit((self._scheme, self._netloc, self._prefix + u.path, u.query, u.fragment))
        return super().request(method, url, *args, **kwargs)


def auth_hint(ch: TwilioChannel) -> str:
    return (
        f"check ${ch.account_sid_env} and ${ch.auth_token_env} (or ${ch.api_key_env} + "
        f"${ch.api_secret_env}), then run `campaignctl auth twilio`"
    )


def make_client(name: str, ch: TwilioChannel) -> Client:
    """A Twilio REST client from the environment, pointed at `api_base` when configured."""
    sid = os.environ.get(ch.account_sid_env, "").strip()
    key = os.environ.get(ch.api_key_env, "").strip()
    secret = os.environ.get(ch.api_secret_env, "").strip()
    token = os.environ.get(ch.auth_token_env, "").strip()
    missing = None
    if not sid:
        missing = ch.account_sid_env
    elif not (token or (key and secret)):
        missing = ch.auth_token_env
    if missing:
        raise CredentialsError(
            f"twilio channel {name!r}: environment variable {missing} is not set",
            hint=auth_hint(ch),
        )
    username, password = (key, secret) if key and secret else (sid, token)
    timeout = ch.timeout.total_seconds()
    http = (
        ApiBaseHttpClient(ch.api_base, timeout=timeout)
        if ch.api_base
        else TwilioHttpClient(timeout=timeout)
    )
    return Client(username, password, account_sid=sid, http_client=http)


def classify(name: str, ch: TwilioChannel, exc: TwilioRestException) -> ChannelError:
    """Twilio's error codes as our kinds (see docs/channels.md for the table)."""
    code = int(exc.code) if exc.code else None
    status = int(exc.status or 0)
    text = f"twilio channel {name!r}: {code or status}: {exc.msg}"
    tag = str(code or status)
    if code == OPTED_OUT_CODE:
        return ChannelError(ErrorKind.OPTED_OUT, text, code=tag)
    if code == OUTSIDE_WINDOW_CODE:
        return ChannelError(ErrorKind.PERMANENT, text, code=tag, hint=WINDOW_HINT)
    if code == 20003 or status in (401, 403):
        return CredentialsError(text, code=tag, hint=auth_hint(ch))
    if code == 20429 or status == 429:
        return ChannelError(ErrorKind.TRANSIENT, text, code=tag)
    if status >= 500:
        return ChannelError(ErrorKind.TRANSIENT, text, code=tag, maybe_sent=True)
    if code in BAD_NUMBER_CODES or 400 <= status < 500:
        return ChannelError(ErrorKind.PERMANENT, text, code=tag)
    return ChannelError(ErrorKind.TRANSIENT, text, code=tag)


def call(name: str, ch: TwilioChannel, fn: Callable[[], T]) -> T:
    """Run one Twilio request; every failure comes out as a classified `ChannelError`."""
    try:
        return fn()
    except TwilioRestException as exc:
        raise classify(name, ch, exc) from None
    except TwilioException as exc:
        # a list's later pages fail as TwilioException('Unable to fetch page', response)
        resp = next((a for a in exc.args if isinstance(a, Response)), None)
        if resp is None:
            raise ChannelError(
                ErrorKind.TRANSIENT, f"twilio channel {name!r}: {exc.args[0] if exc.args else exc}"
            ) from None
        try:
            body = json.loads(resp.text)
        except ValueError:
            body = {}
        rest = TwilioRestException(
            resp.status_code, "", msg=str(body.get("message") or exc.args[0]), code=body.get("code")
        )
        raise classify(name, ch, rest) from None
    except requests.ConnectionError as exc:
        # refused before anything was written: certainly not sent; a reset mid-way: maybe sent
        refused = "refused" in str(exc).lower()
        raise ChannelError(
            ErrorKind.TRANSIENT,
            f"twilio channel {name!r}: cannot reach {ch.api_base or 'https://api.twilio.com'} "
            f"({type(exc).__name__})",
            maybe_sent=not refused,
        ) from None
    except requests.RequestException as exc:
        raise ChannelError(
            ErrorKind.TRANSIENT,
            f"twilio channel {name!r}: request failed ({type(exc).__name__})",
            maybe_sent=True,
        ) from None


def served_status_callback(cfg: Config) -> str | None:
    """`serve`'s status callback URL when the campaign file has `[server]`, else None."""
    from campaignctl.web.links import TWILIO_STATUS_PATH

    if cfg.server is None:
        return None
    return cfg.server.public_base_url.rstrip("/") + TWILIO_STATUS_PATH


class TwilioMessagesChannel:
    """One Twilio sender: a number, a WhatsApp sender, or a messaging service."""

    def __init__(self, cfg: Config, name: str, ch: TwilioChannel) -> None:
        self.name = name
        self.kind = cfg.channel_kind(name)
        self._ch = ch
        self._client = make_client(name, ch)
        self._from = self._address(ch.from_) if ch.from_ else None
        self._status_callback = ch.status_callback or served_status_callback(cfg)

    def _address(self, number: str) -> str:
        if self.kind == "whatsapp" and not number.startswith("whatsapp:"):
            return f"whatsapp:{number}"
        return number

    def send(self, msg: Outgoing) -> Sent:
        """Messages.create: a body, or a WhatsApp template (`content_sid` + variables)."""
        params: dict[str, Any] = {"to": self._address(msg.to)}
        if self._from:
            params["from_"] = self._from
        if self._ch.messaging_service_sid:
            params["messaging_service_sid"] = self._ch.messaging_service_sid
        if msg.content_sid:
            params["content_sid"] = msg.content_sid
            if msg.content_variables:
                params["content_variables"] = json.dumps(msg.content_variables)
        else:
            params["body"] = msg.text
        if self._status_callback:
            params["status_callback"] = self._status_callback
        created = call(self.name, self._ch, lambda: self._client.messages.create(**params))
        return Sent(provider_id=str(created.sid))

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        """List messages To/From the lead since the claim's date and look for ours.

        `DateSent >= claimed date` finds what Twilio sent; a message still queued has no
        date_sent yet, so the newest few messages to the lead are looked at as well.
        """
        if not msg.content_sid and not msg.text:
            # nothing to match: any message to the lead would look like ours
            return Reconciliation(Reconciled.UNKNOWN)
        since = datetime.combine(_utc(msg.claimed_at).date(), datetime.min.time(), UTC)
        filters: dict[str, Any] = {"to": self._address(msg.to)}
        if self._from:
            filters["from_"] = self._from
        sent = call(
            self.name,
            self._ch,
            lambda: self._client.messages.list(
                **filters, date_sent_after=since, limit=200, page_size=200
            ),
        )
        match = self._match(msg, sent)
        if match is None:
            recent = call(
                self.name,
                self._ch,
                lambda: self._client.messages.list(
                    **filters, limit=QUEUED_LOOKBACK, page_size=QUEUED_LOOKBACK
                ),
            )
            match = self._match(msg, (m for m in recent if m.date_sent is None))
        if match is None:
            return Reconciliation(Reconciled.NOT_SENT)
        return Reconciliation(Reconciled.SENT, provider_id=str(match.sid))

    def reconcile_many(self, msgs: Sequence[Outgoing]) -> dict[int, Reconciliation]:
        """Every lost outcome with one list (paged) of what we sent since the earliest claim,
        matched by recipient and body, plus one list of the newest messages for those still
        queued (no date_sent yet), only when some are unmatched."""
        answers = {m.id: Reconciliation(Reconciled.UNKNOWN) for m in msgs}
        todo = sorted((m for m in msgs if m.content_sid or m.text), key=lambda m: m.claimed_at)
        if not todo:
            return answers
        floor = _utc(todo[-1].claimed_at) - self._ch.give_up_after
        todo = [m for m in todo if _utc(m.claimed_at) >= floor]  # older ones: left unknown
        since = max(_utc(todo[0].claimed_at) - RECONCILE_SLACK, floor)
        filters: dict[str, Any] = {"from_": self._from} if self._from else {}
        limit = RECONCILE_MAX_PAGES * RECONCILE_PAGE_SIZE
        sent = call(
            self.name,
            self._ch,
            lambda: self._client.messages.list(
                **filters, date_sent_after=since, limit=limit, page_size=RECONCILE_PAGE_SIZE
            ),
        )
        used: set[str] = set()
        left = self._match_all(todo, sent, used, answers)
        dated = [_utc(m.date_sent) for m in sent if m.date_sent is not None]
        if len(sent) >= limit and dated:
            # The listing (newest first) stopped short of `since`: a message that may have
            # been sent before the oldest one read is not "not sent", only not known yet.
            reached = min(dated)
            left = [m for m in left if _utc(m.claimed_at) - CLOCK_SLACK >= reached]
        if left:
            recent = call(
                self.name,
                self._ch,
                lambda: self._client.messages.list(
                    **filters,
                    limit=QUEUED_LOOKBACK + len(left),
                    page_size=QUEUED_LOOKBACK + len(left),
                ),
            )
            queued = [m for m in recent if m.date_sent is None]
            for msg in self._match_all(left, queued, used, answers):
                answers[msg.id] = Reconciliation(Reconciled.NOT_SENT)
        return answers

    def _match_all(
        self,
        msgs: list[Outgoing],
        candidates: Iterable[Any],
        used: set[str],
        answers: dict[int, Reconciliation],
    ) -> list[Outgoing]:
        """Match each message to a listed one not matched yet; returns those left unmatched."""
        by_to: dict[str, list[Any]] = {}
        for c in candidates:
            by_to.setdefault(str(c.to), []).append(c)
        left = []
        for msg in msgs:
            pool = [c for c in by_to.get(self._address(msg.to), []) if str(c.sid) not in used]
            match = self._match(msg, reversed(pool))  # oldest first: lists are newest first
            if match is None:
                left.append(msg)
                continue
            used.add(str(match.sid))
            answers[msg.id] = Reconciliation(Reconciled.SENT, provider_id=str(match.sid))
        return left

    def _match(self, msg: Outgoing, candidates: Iterable[Any]) -> Any:
        # clocks differ: accept a message created shortly before our claim time
        not_before = _utc(msg.claimed_at) - CLOCK_SLACK
        for m in candidates:
            if not str(m.direction or "").startswith("outbound"):
                continue
            if (
                self._ch.messaging_service_sid
                and m.messaging_service_sid
                and m.messaging_service_sid != self._ch.messaging_service_sid
            ):
                continue
            if m.date_created is not None and m.date_created < not_before:
                continue
            body = m.body or ""
            # a template's text is Twilio's, not ours: the time and the recipient decide;
            # trial accounts prefix every body with "Sent from your Twilio trial account - "
            if msg.content_sid or body == msg.text or body.endswith(msg.text):
                return m
        return None

    def fetch_inbound(self, cursor: str | None, now: datetime) -> Fetched:
        """Messages to our number since the cursor, and our sends of the last days with their
        delivery status, at most SYNC_MAX_PAGES pages.

        A round lists from the cursor's time (an ISO time) and ends with the time it started as
        the new cursor; a round cut short by the page cap stores `{"started", "pages"}` instead
        (the page to read next of each list not finished), and the next call finishes it first.
        Without a `from` (a messaging service only) the account's messages are listed.
        """
        started, pages = self._round(cursor, now)
        out: dict[str, Received] = {}
        for _ in range(SYNC_MAX_PAGES):
            if not pages:
                break
            page = call(self.name, self._ch, lambda p=pages[0]: self._page(p))  # type: ignore[misc]
            for m in page:
                out[str(m.sid)] = _received(m)
            if page.next_page_url:
                pages[0] = {"next": str(page.next_page_url)}
            else:
                pages.pop(0)
        items = list(out.values())
        if pages:
            return Fetched(items, json.dumps({"started": started, "pages": pages}), more=True)
        return Fetched(items, started)

    def _round(self, cursor: str | None, now: datetime) -> tuple[str, list[dict[str, Any]]]:
        """The round's start time and the pages it still has to read (first pages: a new one)."""
        with contextlib.suppress(ValueError, TypeError, KeyError):
            if cursor and cursor.startswith("{"):
                state = json.loads(cursor)
                return str(state["started"]), [dict(p) for p in state["pages"]]
        since = _utc(now) - FIRST_SYNC_LOOKBACK
        with contextlib.suppress(ValueError):  # a cursor we did not write: look back a week
            if cursor:
                since = _utc(datetime.fromisoformat(cursor)) - INBOUND_OVERLAP
        status_since = min(since, _utc(now) - STATUS_LOOKBACK)
        queries: list[tuple[dict[str, Any], datetime]] = (
            [({"to": self._from}, since), ({"from_": self._from}, status_since)]
            if self._from
            else [({}, status_since)]
        )
        return _utc(now).isoformat(), [{"filters": f, "after": a.isoformat()} for f, a in queries]

    def _page(self, page: dict[str, Any]) -> Any:
        """One page of the Messages list: a stored next-page URL, or a list's first page."""
        if "next" in page:
            return self._client.messages.get_page(page["next"])
        return self._client.messages.page(
            **page["filters"],
            date_sent_after=datetime.fromisoformat(page["after"]),
            page_size=SYNC_PAGE_SIZE,
        )

    def close(self) -> None:
        session = getattr(self._client.http_client, "session", None)
        if session is not None:
            session.close()


def _received(m: Any) -> Received:
    """A Twilio Message resource, with the REST JSON names `inbound` classifies."""
    return Received(
        provider_id=str(m.sid),
        resource={
            "sid": m.sid,
            "direction": m.direction,
            "from": m.from_,
            "to": m.to,
            "body": m.body,
            "status": m.status,
            "error_code": m.error_code,
            "error_message": m.error_message,
            "date_sent": m.date_sent,
            "date_created": m.date_created,
        },
        received_at=m.date_sent,
    )


def _utc(when: datetime) -> datetime:
    """`when` in UTC; a naive time is taken as UTC already (the store keeps UTC)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def open(cfg: Config, name: str) -> TwilioMessagesChannel:
    """The Twilio adapter for channel `name` (called by `open_channel`)."""
    ch = cfg.channels[name]
    assert isinstance(ch, TwilioChannel)
    return TwilioMessagesChannel(cfg, name, ch)


@dataclass(frozen=True)
class AccountInfo:
    """What `auth twilio` shows: never the token."""

    sid: str
    friendly_name: str
    status: str
    type: str

    @property
    def masked_sid(self) -> str:
        return f"{self.sid[:2]}…{self.sid[-4:]}" if len(self.sid) > 6 else "…"


def verify(cfg: Config, name: str) -> AccountInfo:
    """Fetch the account with the channel's credentials (through `api_base` when set)."""
    ch = cfg.channels[name]
    assert isinstance(ch, TwilioChannel)
    # refused credentials raise CredentialsError (exit 78), an unreachable Twilio exits 75
    client = make_client(name, ch)
    account = call(name, ch, lambda: client.api.v2010.accounts(client.account_sid).fetch())
    return AccountInfo(
        sid=str(account.sid),
        friendly_name=str(account.friendly_name or ""),
        status=str(account.status or ""),
        type=str(account.type or ""),
    )
