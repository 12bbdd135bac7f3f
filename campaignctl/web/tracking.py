"""The tracking doors: `/c/TOKEN` (a click: recorded, then redirected) and `/o/TOKEN.gif` (an
open: recorded, answered with a transparent 1x1 GIF).

The link is signed over the message and the URL (`Links.click`), so the redirect goes only
where the email pointed: a token that does not verify is a 404 page, never a redirect. Each hit
is an `event` (kind `click` or `open`) with `detail` {"machine", "url", "why"}, judged by
`web.machine`; every hit is recorded, and rates count messages with a person's hit. Recording
goes through the group commit (`Web.write`); when it fails, the click still redirects and the
pixel still answers, and the log gets one line.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from campaignctl.store import tracking
from campaignctl.store.conn import Transaction
from campaignctl.web.context import Web, log
from campaignctl.web.machine import BURST, Hit, burst_partners, machine_reason

#: The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

#: Every hit reaches the server: no browser, proxy or CDN keeps the answer.
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


def routes(web: Web) -> list[BaseRoute]:
    def click(request: Request) -> Response:
        found = web.links.read_click(request.path_params["token"])
        if found is None:
            raise HTTPException(404)
        message_id, url = found
        if not url.lower().startswith(("https://", "http://")):
            raise HTTPException(404)  # never signed by `send`: no other scheme is tracked
        _record(web, request, tracking.CLICK, message_id, url)
        headers = {**NO_CACHE, "Referrer-Policy": "no-referrer"}
        return RedirectResponse(url, 302, headers=headers)

    def opened(request: Request) -> Response:
        message_id = web.links.read_open(request.path_params["token"])
        if message_id is None:
            raise HTTPException(404)
        _record(web, request, tracking.OPEN, message_id, None)
        return Response(PIXEL, 200, headers=NO_CACHE, media_type="image/gif")

    # GET routes answer HEAD too: link checkers send it, and the rules count it as a machine's
    return [
        Route("/c/{token}", click, methods=["GET"]),
        Route("/o/{token}.gif", opened, methods=["GET"]),
    ]


def _record(web: Web, request: Request, kind: str, message_id: int, url: str | None) -> None:
    """Record the hit; a failure is one log line, never the recipient's problem."""
    at = web.clock()
    client = request.client.host if request.client else None
    ua = request.headers.get("user-agent", "")

    def write(session: Transaction) -> str | None:
        return record_hit(session, kind, message_id, url, request.method, ua, client, at)

    try:
        web.write(write)
    except Exception as exc:
        log.error(
            "serve: error: %s of message %d not recorded: %s: %s",
            kind,
            message_id,
            type(exc).__name__,
            exc,
        )


def record_hit(
    session: Transaction,
    kind: str,
    message_id: int,
    url: str | None,
    method: str,
    user_agent: str,
    client_ip: str | None,
    at: datetime,
) -> str | None:
    """Record one click or open of `message_id`, judged; the machine reason, or None (also
    when the message is gone: nothing is recorded then)."""
    msg = tracking.message_of(session, message_id)
    if msg is None:
        return None
    earlier: list[Any] = []
    if kind == tracking.CLICK:
        earlier = tracking.clicks_since(session, message_id, at - BURST - timedelta(seconds=1))
    hit = Hit(
        kind=kind,
        method=method,
        user_agent=user_agent,
        at=at,
        # a scanner may click before the send is recorded: the claim is the send then
        sent_at=msg.sent_at or msg.claimed_at,
        client_ip=client_ip,
        url=url,
        earlier=[(e.occurred_at, (e.detail or {}).get("url", "")) for e in earlier],
    )
    why = machine_reason(hit)
    detail: dict[str, Any] = {"machine": why is not None}
    if url is not None:
        detail["url"] = url
    if why is not None:
        detail["why"] = why
    tracking.add_hit(session, kind, message_id, msg.lead_id, msg.channel, detail, at)
    if why == "burst":
        partners = [earlier[i] for i in burst_partners(hit)]
        tracking.flag_machine(
            session,
            [(e.id, dict(e.detail or {})) for e in partners if not (e.detail or {}).get("machine")],
            why,
        )
    return why
