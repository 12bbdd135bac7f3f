"""Running the application under uvicorn: `campaignctl serve` (and `daemon --serve`)."""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from campaignctl.config import Config
from campaignctl.errors import CampaignctlError, ExitCode, missing_extra
from campaignctl.store import Store, utcnow
from campaignctl.web.context import Web, log


class PortInUseError(CampaignctlError):
    """The address to listen on is taken (another `serve`?) or not ours to bind."""

    exit_code = ExitCode.TEMPFAIL


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); PortInUseError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUseError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "stop the other server, or pick another address with --host/--port",
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, for which SIGTERM and Ctrl-C are the normal way to stop: after
        the graceful shutdown the process exits 0 instead of raising the signal again."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return Server


def configure_logging() -> None:
    """One plain line per record on stderr (journald and cron mail keep it as it is)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


class Prepared:
    """A bound socket and the uvicorn server for it, ready to run (here or in a thread)."""

    def __init__(self, web: Web, sock: socket.socket, server: Any) -> None:
        self.web, self.sock, self.server = web, sock, server
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve in this thread until SIGTERM or Ctrl-C (when it is the main thread) or
        `stop`."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()
            self.web.close()

    def start(self) -> None:
        """Serve in a thread of its own (`daemon --serve`)."""
        self._thread = threading.Thread(target=self.run, name="campaignctl-serve", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the requests in flight and stop (the thread started by `start`)."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)


def prepare(
    cfg: Config,
    store: Store,
    host: str,
    port: int,
    environ: Mapping[str, str],
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Prepared:
    """SetupError (78) without `[server]`, its keys or the `web` extra; PortInUseError (75)
    when the address is taken."""
    web = Web.open(cfg, store, environ, clock)
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise missing_extra(exc.name or "uvicorn", "web", "`campaignctl serve`") from None
    from campaignctl.web.app import create_app

    sock = bind(host, port)
    configure_logging()
    config = uvicorn.Config(
        create_app(web),
        log_config=None,
        access_log=False,  # ours (web.app.AccessLog) cuts tokens short
        server_header=False,
        date_header=True,
        lifespan="off",
        timeout_graceful_shutdown=10,
    )
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    return Prepared(web, sock, _server_class()(config))


def serve(
    cfg: Config,
    store: Store,
    host: str,
    port: int,
    environ: Mapping[str, str],
    *,
    clock: Callable[[], datetime] = utcnow,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """`campaignctl serve`: serve until SIGTERM or Ctrl-C (see `prepare` for the errors)."""
    prepared = prepare(cfg, store, host, port, environ, clock=clock)
    if on_ready:
        base = cfg.server.public_base_url if cfg.server else ""
        on_ready(f"serving {base} on {prepared.url} (Ctrl-C stops)")
    prepared.run()
