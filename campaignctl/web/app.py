"""The Starlette application: each door's routes, behind the limits every request meets.

- A body over `Web.max_body` is refused with 413 before a handler reads it (by Content-Length,
  or while it streams in).
- An unknown path is a 404 page, a wrong method a 405 with `Allow`.
- The database unavailable (locked past the busy timeout, disk full) is a 503 with
  `Retry-After`; any other failure a 500. Either way the client gets a short page and the log
  one line, never a traceback.
- One access-log line per request, greppable (`serve: 203.0.113.9 POST /u/eyJsZWFk… 200 4.1ms`),
  with tokens cut short so a log never holds a working link.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaignctl.store.errors import DatabaseError
from campaignctl.web.context import Web, log
from campaignctl.web.pages import message_page
from campaignctl.web.tokens import redact

#: Each door's routes: `routes(web)` of the modules that serve them.
RouteFactory = Callable[[Web], Iterable[BaseRoute]]


def _doors() -> list[RouteFactory]:
    """The modules that add routes. Each door is a module with `routes(web)`."""
    from campaignctl.web import tracking, twilio, unsubscribe

    return [_health_routes, unsubscribe.routes, tracking.routes, twilio.routes]


def _health_routes(web: Web) -> list[BaseRoute]:
    def healthz(request: Request) -> Response:
        """For load balancers and systemd: 200 when the database answers."""
        from campaignctl.store import meta

        with web.store.read() as session:
            meta.heartbeat(session)
        return PlainTextResponse("ok\n")

    return [Route("/healthz", healthz, methods=["GET", "HEAD"])]


def create_app(web: Web, doors: Iterable[RouteFactory] | None = None) -> ASGIApp:
    """The ASGI application for `web`; `doors` replaces the route modules (tests)."""
    routes: list[BaseRoute] = []
    for door in _doors() if doors is None else doors:
        routes.extend(door(web))
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_error,
            DatabaseError: _database_error,
        },
    )
    app.state.web = web
    return AccessLog(BodyLimit(app, web.max_body))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed", 413: "Too large"}
    title = titles.get(exc.status_code, "Error")
    text = {
        404: "There is nothing here. If you followed a link from an email, it may be incomplete.",
        405: "This address does not accept that method.",
        413: _TOO_LARGE,
    }.get(exc.status_code, exc.detail)
    return HTMLResponse(message_page(title, text), exc.status_code, headers=exc.headers)


async def _database_error(request: Request, exc: Exception) -> Response:
    log.error(
        "serve: error: %s %s: database unavailable: %s",
        request.method,
        _shown_path(request.url.path),
        exc,
    )
    return HTMLResponse(
        message_page("Try again shortly", "The service is busy; please try again in a minute."),
        503,
        headers={"Retry-After": "30"},
    )


_TOO_LARGE = "The request body is larger than this service accepts."


def _shown_path(path: str) -> str:
    """The path as logs show it: each token cut short (`tokens.redact`)."""
    return "/".join(redact(part) for part in path.split("/"))


class _TooLarge(HTTPException):
    """Raised from `receive` while a body streams in: inside a handler, Starlette's exception
    middleware turns it into the 413 page."""

    def __init__(self) -> None:
        super().__init__(413)


class BodyLimit:
    """413 for a request body over `limit` bytes, announced or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _too_large(send)


async def _too_large(send: Send) -> None:
    body = message_page("Too large", _TOO_LARGE)
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class AccessLog:
    """One line per request; an exception the app let through is logged as one line and
    answered with a 500 page if nothing was sent yet."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = _shown_path(scope.get("path", ""))
        try:
            await self.app(scope, receive, recording_send)
        except Exception as exc:
            log.error("serve: error: %s %s: %s: %s", scope["method"], path, type(exc).__name__, exc)
            if status == 0:
                status = 500
                await HTMLResponse(
                    message_page("Something went wrong", "Please try again later."), 500
                )(scope, receive, send)
        client = scope.get("client")
        host = client[0] if client else "-"
        ms = (time.perf_counter() - start) * 1000
        log.info("serve: %s %s %s %d %.1fms", host, scope["method"], path, status, ms)
