"""Twilio's webhooks: `POST /twilio/status` (a message's StatusCallback) and
`POST /twilio/inbound` (an incoming SMS or WhatsApp message).

Both are refused with 403, writing nothing, unless `X-Twilio-Signature` is valid for the URL
Twilio was given (`public_base_url` + the path, never the Host header a proxy forwards) and the
form, by twilio's own `RequestValidator`, with the auth token of a Twilio channel (several
channels: any of their tokens). What a webhook says goes through the same classification and
recording as `sync` (`sync.record_received`): the form is read as the Message resource `sync`
lists, so an event has the same `source_id` whichever of the two sees it first, and is recorded
once; a STOP opts the lead out through the one suppression rule; a status that does not move
its message forward is dropped (`inbound.record`). A status about a sid that is not ours yet
(the engine records a batch's sids after sending it all) is kept until it is
(`inbound.record_status`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from twilio.request_validator import RequestValidator

from campaignctl.channels.base import Received
from campaignctl.channels.providers.twilio import TwilioChannel
from campaignctl.classify import TWILIO_FINAL, twilio_webhook_resource
from campaignctl.config import Config
from campaignctl.inbound import Recorded, known_by_provider_id, record_status
from campaignctl.suppression import stop_on_of
from campaignctl.sync import record_received
from campaignctl.web.context import Web, log
from campaignctl.web.links import TWILIO_INBOUND_PATH, TWILIO_STATUS_PATH

if TYPE_CHECKING:
    from campaignctl.store.conn import Transaction

SIGNATURE_HEADER = "x-twilio-signature"
#: The answer to an incoming message: nothing to send back (Twilio's Advanced Opt-Out answers
#: STOP, START and HELP itself).
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class Form(dict[str, str]):
    """A webhook's urlencoded form: each field's last value, and `getlist` for the validator
    (which signs every value of a repeated field)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._lists: dict[str, list[str]] = {}
        for key, value in pairs:
            self._lists.setdefault(key, []).append(value)

    def getlist(self, key: str) -> list[str]:
        return self._lists.get(key, [])


@dataclass(frozen=True)
class TwilioSide:
    """The Twilio channels a webhook may be about, and the auth tokens that sign them."""

    #: channel name -> the address Twilio writes in To/From (`whatsapp:` kept)
    addresses: Mapping[str, str]
    #: channel name -> its messaging service SID
    services: Mapping[str, str]
    #: (validator, the channels whose auth token it holds), one per distinct token
    validators: tuple[tuple[RequestValidator, tuple[str, ...]], ...]
    #: Twilio channels whose auth token is not in the environment
    missing: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, cfg: Config, environ: Mapping[str, str]) -> TwilioSide:
        addresses: dict[str, str] = {}
        services: dict[str, str] = {}
        by_token: dict[str, list[str]] = {}
        missing: list[tuple[str, str]] = []
        for name, ch in cfg.channels.items():
            if not isinstance(ch, TwilioChannel):
                continue
            if ch.from_:
                whatsapp = cfg.channel_kind(name) == "whatsapp"
                prefix = "whatsapp:" if whatsapp and not ch.from_.startswith("whatsapp:") else ""
                addresses[name] = prefix + ch.from_
            if ch.messaging_service_sid:
                services[name] = ch.messaging_service_sid
            token = environ.get(ch.auth_token_env, "").strip()
            if token:
                by_token.setdefault(token, []).append(name)
            else:
                missing.append((name, ch.auth_token_env))
        return cls(
            addresses,
            services,
            tuple((RequestValidator(t), tuple(names)) for t, names in by_token.items()),
            tuple(missing),
        )

    def signed_by(self, url: str, form: Form, signature: str) -> list[str]:
        """The channels whose auth token made `signature` over `url` and `form` (none: refuse)."""
        if not signature:
            return []
        names: list[str] = []
        for validator, channels in self.validators:
            if validator.validate(url, form, signature):
                names.extend(channels)
        return names

    def channel_for(self, form: Mapping[str, str], signed: Sequence[str], ours: str) -> str | None:
        """The channel the webhook is about: the one whose number is the form's `ours` field
        (To for an incoming message, From for a status), else whose messaging service it
        names, else the first that signed. None when that channel's own token did not sign
        it (another account's token for this number: not from Twilio)."""
        address = form.get(ours) or ""
        service = form.get("MessagingServiceSid") or ""
        named = [n for n, a in self.addresses.items() if address and a == address]
        named = named or [n for n, v in self.services.items() if service and v == service]
        if not named:
            return signed[0]
        return next((n for n in named if n in signed), None)


def routes(web: Web, environ: Mapping[str, str] | None = None) -> list[BaseRoute]:
    """The two webhook routes; `environ` holds the auth tokens (default: the process's)."""
    cfg = web.cfg
    side = TwilioSide.of(cfg, os.environ if environ is None else environ)
    for name, var in side.missing:
        log.warning(
            "serve: warning: twilio channel %r: environment variable %s is not set: its "
            "webhooks cannot be verified and are refused",
            name,
            var,
        )
    stop_on = stop_on_of(cfg)

    async def verified(request: Request, url: str) -> tuple[Form, list[str]] | None:
        body = await request.body()
        form = Form(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if request.url.query:
            url = f"{url}?{request.url.query}"
        signed = side.signed_by(url, form, request.headers.get(SIGNATURE_HEADER, ""))
        return (form, signed) if signed else None

    def record(channel: str, resource: dict[str, Any], inbound: bool) -> Recorded:
        sid = str(resource["sid"])
        now = web.clock()
        received = Received(provider_id=sid, resource=resource)

        def work(session: Transaction) -> Recorded:
            if not inbound:  # kept when its sid is not ours yet
                return record_status(cfg, session, channel, resource, now, stop_on)
            known = known_by_provider_id(session, [sid])
            return record_received(cfg, session, channel, [received], known, now, stop_on)

        return web.write(work)

    async def webhook(request: Request, *, inbound: bool) -> Response:
        """Verify, then record through `sync`'s path: an incoming message (its channel is the
        number it was sent To), or a status callback (From our number) whose status is final;
        queued, sending, sent...: the message's own state says as much, nothing to record."""
        url = web.links.twilio_inbound() if inbound else web.links.twilio_status()
        checked = await verified(request, url)
        if checked is None:
            return _forbidden()
        form, signed = checked
        resource = twilio_webhook_resource(form, inbound=inbound)
        channel = side.channel_for(form, signed, "To" if inbound else "From")
        if channel is None:
            return _forbidden()
        wanted = inbound or str(resource["status"] or "").lower() in TWILIO_FINAL
        if resource["sid"] and wanted:
            await run_in_threadpool(record, channel, resource, inbound)
        if inbound:
            return Response(EMPTY_TWIML, media_type="text/xml")
        return Response(status_code=204)

    async def status(request: Request) -> Response:
        return await webhook(request, inbound=False)

    async def inbound(request: Request) -> Response:
        return await webhook(request, inbound=True)

    return [
        Route(TWILIO_STATUS_PATH, status, methods=["POST"]),
        Route(TWILIO_INBOUND_PATH, inbound, methods=["POST"]),
    ]


def _forbidden() -> Response:
    return PlainTextResponse("forbidden: not signed by Twilio\n", 403)
