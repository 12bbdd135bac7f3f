"""The web side in tests: a project with `[server]`, the app in-process, `serve` as a process.

In-process requests go through Starlette's TestClient (httpx over the ASGI interface, no
socket); `serve_process` starts the real `campaignctl serve` under uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from starlette.testclient import TestClient

from campaignctl.config import Config, load
from campaignctl.store import Store, utcnow
from campaignctl.web.app import RouteFactory, create_app
from campaignctl.web.context import Web
from tests.support.project import REPO

SECRET = "test-signing-key-0123456789abcdef"
OLD_SECRET = "old-signing-key-fedcba9876543210"
BASE_URL = "https://out.example.test"
ENV = {"CAMPAIGNCTL_SECRET": SECRET}


def server_section(
    *, track_clicks: bool = False, track_opens: bool = False, secret_env: str | None = None
) -> str:
    text = f'[server]\npublic_base_url = "{BASE_URL}"\n'
    if secret_env is not None:
        text += f'secret_env = "{secret_env}"\n'
    if track_clicks:
        text += "track_clicks = true\n"
    if track_opens:
        text += "track_opens = true\n"
    return text


@dataclass
class WebRig:
    """A project's app in-process: `client` talks to it, `store` reads what it wrote."""

    cfg: Config
    store: Store
    web: Web
    client: TestClient


@contextmanager
def web_rig(
    folder: Path,
    *,
    environ: dict[str, str] | None = None,
    clock: Callable[[], datetime] = utcnow,
    doors: list[RouteFactory] | None = None,
) -> Iterator[WebRig]:
    """The app for the campaign file in `folder` (which must have `[server]`)."""
    cfg = load(folder / "campaigns.toml")
    store = Store.for_config(cfg)
    web = Web.open(cfg, store, ENV if environ is None else environ, clock)
    app = create_app(web, doors)
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        yield WebRig(cfg, store, web, client)
    web.close()
    store.close()


_READY = re.compile(r"on (http://127\.0\.0\.1:\d+)")


@contextmanager
def serve_process(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A real `campaignctl serve --port 0` in `folder`, and the URL it listens on; stopped with
    SIGTERM at the end (and its exit code checked by the caller through `.returncode`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "campaignctl", "-C", str(folder), "serve", "--port", "0", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = _READY.search(line)
    if not found:
        proc.kill()
        _, rest = proc.communicate(timeout=10)
        raise AssertionError(f"serve did not start: {line}{rest}")
    try:
        yield proc, found.group(1)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
