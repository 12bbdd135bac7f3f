"""A threaded HTTP server on 127.0.0.1 that hands each request to a fake provider's handler."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (for servers to take, or to be refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "text/html; charset=utf-8")
        return json.dumps(self.body).encode("utf-8"), "application/json; charset=utf-8"


Handler = Callable[[Request], Response]


@dataclass
class Hold:
    """Stops one matching request at the server so a test can act (kill the client) meanwhile.

    `stage="before"`: the request arrived but the provider never handles it; on release the
    connection is closed without an answer (the provider did not get the message).
    `stage="after"`: the provider handled (accepted) it, and the answer waits for release (the
    client dies between the provider's acceptance and its own record).
    """

    match: Callable[[Request], bool]
    stage: str = "after"
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float = 60) -> None:
        """Block until a matching request is held; fail the test when none comes."""
        if not self.reached.wait(timeout):
            raise AssertionError(f"no request reached the hold ({self.stage}) in {timeout} s")


class LoopbackHTTP:
    """Serves `handler` on an ephemeral port of 127.0.0.1 until `stop()`."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[Request] = []
        self.holds: list[Hold] = []
        self._lock = threading.Lock()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                u = urlsplit(self.path)
                req = Request(
                    method=self.command,
                    path=u.path,
                    query=parse_qs(u.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with outer._lock:
                    outer.requests.append(req)
                    hold = next((h for h in outer.holds if h.match(req)), None)
                    if hold is not None:
                        outer.holds.remove(hold)  # one request per hold
                if hold is not None and hold.stage == "before":
                    hold.reached.set()
                    hold.release.wait(60)
                    self.close_connection = True
                    return
                with outer._lock:
                    try:
                        resp = handler(req)
                    except Exception as exc:  # a bug in the fake must show in the test
                        resp = Response(500, {"fake_error": f"{type(exc).__name__}: {exc}"})
                if hold is not None:
                    hold.reached.set()
                    hold.release.wait(60)
                try:
                    self._reply(resp)
                except OSError:  # the client is gone (killed while held): nobody to answer
                    self.close_connection = True

            def _reply(self, resp: Response) -> None:
                data, ctype = resp.encode()
                self.send_response(resp.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in resp.headers.items():
                    if k.lower() != "content-type":
                        self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._server.daemon_threads = True
        # a short poll interval: shutdown() waits for the next poll, at every test's teardown
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def hold(self, match: Callable[[Request], bool], stage: str = "after") -> Hold:
        """Hold the next request `match` accepts (see `Hold`); `release.set()` lets it go."""
        assert stage in ("before", "after")
        hold = Hold(match, stage)
        with self._lock:
            self.holds.append(hold)
        return hold

    def start(self) -> LoopbackHTTP:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
