"""`/u/TOKEN`: one-click unsubscribe (RFC 8058), and its undo (docs/web.md, "Unsubscribe").

The token names a lead and a channel (`Links.unsubscribe`). What each request does:

- GET (and HEAD) shows what would stop, the channel and the lead's address masked
  (`m***@example.com`), with an Unsubscribe button, and CHANGES NOTHING: corporate link
  scanners and previewers follow every link in an email.
- POST opts the lead out of that channel through the one suppression rule
  (`suppression.opt_out_in`, source "unsubscribe"), with an `optout` event: the button's form,
  a mailbox's RFC 8058 `List-Unsubscribe=One-Click`, or an empty body all do the same. A lead
  already opted out of the channel (or of every channel) is left as it is and the page says
  so. Only the page of the POST that opted the lead out offers an undo.
- POST to `/u/TOKEN/undo` with that page's undo token (form field `undo`) opts the lead back
  in (`suppression.opt_in_in`, an `optin` event). The unsubscribe token is in every email the
  lead ever got and never expires, so it cannot be what takes a "stop" back: the undo token
  (`Links.undo_token`, its own purpose) names the opt-out that POST recorded (its
  `created_at`), and works for `UNDO_FOR` after it (against `Web.clock`), while that opt-out
  is still the lead's on the channel: once, and never on a later unsubscribe, a STOP reply or
  `leads optout`. No other page hands one out, so holding a lead's emails is not enough to
  re-subscribe them.

A token that does not verify, or whose lead is gone (erased by `leads delete`, or never there:
a test send's link names no lead), gets a 404 page and changes nothing; so does an undo token
that is missing, tampered with, expired, another lead's or of an earlier opt-out. Every write
goes through `Web.write` (group commit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from campaignctl import suppression
from campaignctl.store import events, leads
from campaignctl.store.events import ALL_CHANNELS
from campaignctl.web.pages import page
from campaignctl.web.tokens import UNDO_FOR

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store.conn import Transaction
    from campaignctl.web.context import Web

#: `OptOut.source` of the opt-outs an unsubscribe link records (and may undo).
SOURCE = "unsubscribe"

#: How each kind of channel is named on the page.
_WHAT = {"email": "emails", "sms": "text messages", "whatsapp": "WhatsApp messages"}


# ---------------------------------------------------------------- what a token names


@dataclass(frozen=True)
class Subscription:
    """A lead on a channel, as the page shows it: never the full address."""

    lead_id: int
    channel: str
    what: str  # "emails", "text messages"
    to: str  # the address masked, or "" when the lead has none for this channel
    opted_out: bool  # of this channel or of every channel
    undoable: bool  # opted out of this channel by an unsubscribe (the page can undo it)


def mask_email(address: str) -> str:
    """`maria@example.com` -> `m***@example.com`: enough for its owner to recognise it."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str) -> str:
    """`+639171234567` -> `+*********67`."""
    digits = [c for c in phone if c.isdigit()]
    if len(digits) <= 2:
        return "***"
    return ("+" if phone.startswith("+") else "") + "*" * (len(digits) - 2) + "".join(digits[-2:])


def _kind(cfg: Config, channel: str, email: str | None) -> str:
    if channel in cfg.channels:
        return cfg.channel_kind(channel)
    return "email" if email else "sms"  # a channel since removed from the campaign file


def look(session: Transaction, cfg: Config, lead_id: int, channel: str) -> Subscription | None:
    """The lead's subscription to `channel`; None when there is no such lead or it was erased
    (`leads delete` leaves neither email nor phone)."""
    found = list(leads.by_ids(session, [lead_id]))
    if not found or not (found[0].email or found[0].phone):
        return None
    lead = found[0]
    kind = _kind(cfg, channel, lead.email)
    if kind == "email":
        to = mask_email(lead.email) if lead.email else ""
    else:
        to = mask_phone(lead.phone) if lead.phone else ""
    sources = events.optout_sources(session, lead_id, [channel, ALL_CHANNELS])
    return Subscription(
        lead_id,
        channel,
        _WHAT.get(kind, "messages"),
        to,
        opted_out=bool(sources),
        undoable=sources.get(channel) == SOURCE,
    )


@dataclass(frozen=True)
class Outcome:
    """What a POST did: `changed` is False when there was nothing to do."""

    subscription: Subscription | None
    changed: bool
    skipped: int = 0  # pending messages skipped
    stopped: int = 0  # sequences stopped
    optout_at: datetime | None = None  # the opt-out this POST recorded (its undo names it)
    refused: bool = False  # an undo whose token names no opt-out it may take back


def unsubscribe_in(
    session: Transaction, cfg: Config, lead_id: int, channel: str, now: datetime, by: str
) -> Outcome:
    """Opt the lead out of `channel` through the suppression rule, once: an `optout` event and
    the opt-out (source "unsubscribe"); nothing when it is already opted out there or of every
    channel. `by` says how (one-click, page, link) in the event's detail."""
    sub = look(session, cfg, lead_id, channel)
    if sub is None or sub.opted_out:
        return Outcome(sub, False)
    done = suppression.asked_opt_out_in(
        session, cfg, lead_id, channel, source=SOURCE, by=by, now=now
    )
    session.flush()
    made = events.optout_of(session, lead_id, channel)
    after = replace(sub, opted_out=True, undoable=True)
    return Outcome(after, True, done.skipped, done.stopped, None if made is None else made[1])


def undo_in(
    session: Transaction,
    cfg: Config,
    lead_id: int,
    channel: str,
    optout_at: datetime | None,
    now: datetime,
) -> Outcome:
    """Take back the unsubscribe opt-out of `channel` created at `optout_at` (what a verified
    undo token names; None when the request had none), an `optin` event, when it is still the
    lead's opt-out there and younger than `UNDO_FOR`. Nothing otherwise: `refused` when the
    token names no opt-out the lead has now (none given, an earlier one, too old); not
    refused when the lead is not opted out there, or was opted out another way (a STOP reply,
    by hand), which the page says."""
    sub = look(session, cfg, lead_id, channel)
    if sub is None:
        return Outcome(sub, False)
    if optout_at is None:
        return Outcome(sub, False, refused=True)
    if not sub.undoable:
        return Outcome(sub, False)
    current = events.optout_of(session, lead_id, channel)
    if current is None or current[1] != optout_at or now - optout_at > UNDO_FOR:
        return Outcome(sub, False, refused=True)
    suppression.asked_opt_in_in(
        session, lead_id, channel, key=f"{SOURCE}-undo", by="unsubscribe page (undo)", now=now
    )
    return Outcome(look(session, cfg, lead_id, channel), True)


def how(body: bytes, form: Mapping[str, str]) -> str:
    """How an unsubscribe POST came: a mailbox's RFC 8058 one-click, the page's button, or a
    bare POST (some clients send an empty body)."""
    if b"One-Click" in body:
        return "one-click"
    if form.get("from") == "page":
        return "unsubscribe page"
    return "unsubscribe link"


# ---------------------------------------------------------------- the pages


def _parse_form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    try:
        return dict(parse_qsl(body.decode("ascii", "replace"), keep_blank_values=True))
    except ValueError:
        return {}


def _hours(span: timedelta) -> int:
    return int(span.total_seconds() // 3600)


def _sender(cfg: Config) -> str:
    return cfg.sender.name or "this sender"


def _about(cfg: Config, sub: Subscription) -> str:
    """`emails from Sunrise Realty to m***@example.com (channel "email")`."""
    to = f" to {sub.to}" if sub.to else ""
    return f'{sub.what} from {_sender(cfg)}{to} (channel "{sub.channel}")'


_NOTHING = (
    "There is nothing to unsubscribe: this link names no one on the mailing list any more, "
    "so no messages are sent to it."
)


class _Door:
    def __init__(self, web: Web) -> None:
        self.web = web

    def _subject(self, request: Request) -> tuple[str, tuple[int, str] | None]:
        token = str(request.path_params["token"])
        return token, self.web.links.read_unsubscribe(token)

    def _show(
        self,
        status: int,
        title: str,
        message: str,
        *,
        unsubscribe: str | None = None,
        undo: str | None = None,
        undo_token: str | None = None,
        note: str | None = None,
    ) -> Response:
        html = page(
            "unsubscribe.html",
            title=title,
            message=message,
            unsubscribe_action=unsubscribe,
            undo_action=undo,
            undo_token=undo_token,
            note=note,
        )
        return HTMLResponse(html, status)

    def _not_found(self) -> Response:
        return self._show(
            404,
            "Not found",
            "There is nothing here. If you followed a link from an email, it may be incomplete.",
        )

    def _nothing(self) -> Response:
        return self._show(404, "Nothing to do", _NOTHING)

    async def page(self, request: Request) -> Response:
        token, named = self._subject(request)
        if named is None:
            return self._not_found()
        if request.method == "POST":
            return await self._unsubscribe(request, token, named)

        def read() -> Subscription | None:
            with self.web.store.read() as session:
                return look(session, self.web.cfg, *named)

        sub = await run_in_threadpool(read)
        if sub is None:
            return self._nothing()
        cfg = self.web.cfg
        if sub.opted_out:
            return self._show(
                200,
                "Already unsubscribed",
                f"Already unsubscribed from {_about(cfg, sub)}.",
            )
        return self._show(
            200,
            "Unsubscribe?",
            f"Stop {_about(cfg, sub)}? Nothing changes until you press the button.",
            unsubscribe=token,  # relative: this page's own URL, behind any proxy prefix
        )

    async def _unsubscribe(self, request: Request, token: str, named: tuple[int, str]) -> Response:
        body = await request.body()
        by = how(body, _parse_form(body))
        cfg, now = self.web.cfg, self.web.clock()
        done = await run_in_threadpool(
            self.web.write, lambda session: unsubscribe_in(session, cfg, *named, now, by)
        )
        sub = done.subscription
        if sub is None:
            return self._nothing()
        if not done.changed:
            # no undo here: anyone holding one of the lead's emails can POST this link
            return self._show(
                200,
                "Already unsubscribed",
                f"Nothing changed: you were already unsubscribed from {_about(cfg, sub)}.",
            )
        undo = None
        if done.optout_at is not None:
            undo = self.web.links.undo_token(sub.lead_id, sub.channel, done.optout_at, now)
        return self._show(
            200,
            "Unsubscribed",
            f"Unsubscribed: no more {_about(cfg, sub)}.",
            undo=f"{token}/undo" if undo else None,  # relative: /u/TOKEN/undo
            undo_token=undo,
        )

    async def undo(self, request: Request) -> Response:
        token, named = self._subject(request)
        if named is None:
            return self._not_found()
        body = await request.body()
        cfg, now = self.web.cfg, self.web.clock()
        names = self.web.links.read_undo(_parse_form(body).get("undo", ""), now)
        # the undo token must name the lead and channel of the page it came from
        optout_at = names[2] if names is not None and names[:2] == named else None
        done = await run_in_threadpool(
            self.web.write, lambda session: undo_in(session, cfg, *named, optout_at, now)
        )
        sub = done.subscription
        if sub is None:
            return self._nothing()
        if done.refused:
            return self._show(
                404,
                "Nothing to undo",
                "Nothing changed: this button no longer works. It takes back one unsubscribe, "
                f"once, within {_hours(UNDO_FOR)} hours; to receive messages again, contact "
                f"{_sender(cfg)}.",
            )
        again = f"../{token}"  # from /u/TOKEN/undo back to /u/TOKEN
        if done.changed:
            note = (
                None
                if not sub.opted_out
                else f"{_sender(cfg)} has stopped every message to this address: "
                "contact them to receive messages again."
            )
            return self._show(
                200,
                "Subscribed again",
                f"Subscribed again to {_about(cfg, sub)}. Messages skipped meanwhile stay skipped.",
                unsubscribe=again,
                note=note,
            )
        if not sub.opted_out:
            return self._show(
                200,
                "Nothing to undo",
                f"Nothing changed: you are not unsubscribed from {_about(cfg, sub)}.",
                unsubscribe=again,
            )
        return self._show(
            200,
            "Nothing to undo",
            f"Nothing changed: {_about(cfg, sub)} were stopped another way (a reply, or a "
            f"request to {_sender(cfg)}), which this page cannot undo.",
        )


def routes(web: Web) -> list[BaseRoute]:
    """`/u/TOKEN` (GET shows, POST unsubscribes) and `/u/TOKEN/undo` (POST, with the undo
    token in the form)."""
    door = _Door(web)
    return [
        Route("/u/{token}", door.page, methods=["GET", "HEAD", "POST"]),
        Route("/u/{token}/undo", door.undo, methods=["POST"]),
    ]
