"""`campaignctl serve`'s frame: keys, tokens, limits, errors and the access log (docs/web.md).

The doors (unsubscribe, Twilio, tracking) have their own test files; these hold what every
request meets, in-process and once through a real uvicorn.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route

from campaignctl.store.errors import DatabaseBusyError
from campaignctl.web.app import _health_routes
from campaignctl.web.context import Web
from campaignctl.web.tokens import Purpose, Signer, redact
from tests.support.cli import Cli
from tests.support.web import OLD_SECRET, SECRET, serve_process, server_section, web_rig


@pytest.fixture
def served(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The minimal project with `[server]`, and its signing key in the environment."""
    monkeypatch.setenv("CAMPAIGNCTL_SECRET", SECRET)
    with (project / "campaigns.toml").open("a") as f:
        f.write("\n" + server_section())
    return project


# ---------------------------------------------------------------- tokens and keys


def test_a_token_reads_back_and_a_changed_one_does_not() -> None:
    signer = Signer([SECRET])
    token = signer.dumps(Purpose.UNSUBSCRIBE, [42, "email"])
    assert signer.loads(Purpose.UNSUBSCRIBE, token) == [42, "email"]
    payload, _, signature = token.partition(".")
    flipped = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    assert signer.loads(Purpose.UNSUBSCRIBE, f"{payload}.{flipped}") is None
    # a payload changed to another lead keeps the signature, which no longer matches
    other = Signer([SECRET]).dumps(Purpose.UNSUBSCRIBE, [43, "email"]).partition(".")[0]
    assert signer.loads(Purpose.UNSUBSCRIBE, f"{other}.{signature}") is None
    assert signer.loads(Purpose.UNSUBSCRIBE, "not-a-token") is None
    # the salt is per purpose: an unsubscribe token is not a click token
    assert signer.loads(Purpose.CLICK, token) is None
    assert Signer(["another-key-0123456789"]).loads(Purpose.UNSUBSCRIBE, token) is None


def test_keys_rotate_the_first_signs_and_every_one_verifies() -> None:
    old_token = Signer([OLD_SECRET]).dumps(Purpose.UNSUBSCRIBE, [7, "sms"])
    rotated = Signer([SECRET, OLD_SECRET])
    assert rotated.loads(Purpose.UNSUBSCRIBE, old_token) == [7, "sms"]
    new_token = rotated.dumps(Purpose.UNSUBSCRIBE, [7, "sms"])
    assert Signer([SECRET]).loads(Purpose.UNSUBSCRIBE, new_token) == [7, "sms"]
    assert Signer([OLD_SECRET]).loads(Purpose.UNSUBSCRIBE, new_token) is None


def test_logs_never_show_a_whole_token() -> None:
    token = Signer([SECRET]).dumps(Purpose.UNSUBSCRIBE, [1, "email"])
    assert token not in redact(token)
    assert redact(token).startswith(token[:8])


# ---------------------------------------------------------------- the campaign file


def test_check_and_serve_refuse_a_server_without_its_key(
    served: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMPAIGNCTL_SECRET", raising=False)
    res = cli("-C", served, "check")
    assert res.exit_code == 1
    assert "server.secret_env: environment variable CAMPAIGNCTL_SECRET is not set" in res.stdout
    res = cli("-C", served, "serve", "--port", "0")
    assert res.exit_code == 78
    assert res.stderr.startswith("campaignctl: error: ")
    assert "hint: export CAMPAIGNCTL_SECRET=" in res.stderr
    monkeypatch.setenv("CAMPAIGNCTL_SECRET", "too-short")
    res = cli("-C", served, "serve", "--port", "0")
    assert res.exit_code == 78
    assert "needs at least 16" in res.stderr


def test_serve_without_a_server_table_exits_78(project: Path, cli: Cli) -> None:
    res = cli("-C", project, "serve", "--port", "0")
    assert res.exit_code == 78
    assert "no [server] table" in res.stderr


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("out.example.com", "must be an https://"),
        ("https://", "has no host"),
        ("https://out.example.com/?a=1", "must not have a query"),
    ],
)
def test_check_names_a_bad_public_base_url(served: Path, cli: Cli, value: str, why: str) -> None:
    toml = served / "campaigns.toml"
    toml.write_text(toml.read_text().replace("https://out.example.test", value))
    res = cli("-C", served, "check")
    assert res.exit_code == 1
    assert "server.public_base_url" in res.stdout
    assert why in res.stdout


# ---------------------------------------------------------------- what every request meets


def test_health_unknown_paths_and_methods(served: Path) -> None:
    with web_rig(served) as rig:
        assert rig.client.get("/healthz").text == "ok\n"
        missing = rig.client.get("/nope")
        assert missing.status_code == 404
        assert "There is nothing here" in missing.text
        wrong = rig.client.delete("/healthz")
        assert wrong.status_code == 405
        assert "GET" in wrong.headers["allow"]


def _echo_routes(web: Web) -> Iterable[BaseRoute]:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    return [Route("/echo", echo, methods=["POST"])]


def test_bodies_over_64_kib_get_413_announced_or_streamed(served: Path) -> None:
    with web_rig(served, doors=[_echo_routes]) as rig:
        assert rig.client.post("/echo", content=b"x" * 65536).text == "65536"
        assert rig.client.post("/echo", content=b"x" * 65537).status_code == 413

        def chunks() -> Iterable[bytes]:  # no Content-Length: counted as it streams in
            for _ in range(20):
                yield b"y" * 4096

        assert rig.client.post("/echo", content=chunks()).status_code == 413


def _failing_routes(web: Web) -> Iterable[BaseRoute]:
    def busy(request: Request) -> PlainTextResponse:
        raise DatabaseBusyError("campaignctl.db: database is locked")

    def broken(request: Request) -> PlainTextResponse:
        raise RuntimeError("something unexpected")

    return [Route("/busy", busy), Route("/broken", broken)]


def test_a_database_error_is_a_503_and_one_log_line(
    served: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="campaignctl.serve")
    with web_rig(served, doors=[_failing_routes]) as rig:
        busy = rig.client.get("/busy")
        broken = rig.client.get("/broken")
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "30"
    assert broken.status_code == 500
    for res in (busy, broken):
        assert "Traceback" not in res.text
        assert "locked" not in res.text
        assert "unexpected" not in res.text
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "serve: error: GET /busy: database unavailable: campaignctl.db: database is locked",
        "serve: error: GET /broken: RuntimeError: something unexpected",
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_the_access_log_cuts_tokens_short(served: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="campaignctl.serve")
    token = "eyJsZWFkIjo0Mn0.abcdefghijklmnopqrstuvwxyz"
    with web_rig(served, doors=[_health_routes]) as rig:
        rig.client.get(f"/u/{token}")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("serve: testclient GET /u/eyJsZWFkIj… 404 ")
    assert token not in lines[0]


# ---------------------------------------------------------------- a real uvicorn


def test_serve_answers_over_loopback_and_stops_cleanly_on_sigterm(served: Path) -> None:
    with serve_process(served) as (proc, url):
        res = httpx.get(f"{url}/healthz", timeout=10)
        assert res.status_code == 200
        assert res.text == "ok\n"
        assert "server" not in res.headers  # no version banner
        assert httpx.post(f"{url}/healthz", content=b"z" * 70000, timeout=10).status_code == 413
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "Traceback" not in err
    logged = [line for line in err.splitlines() if line.startswith("serve: 127.0.0.1 ")]
    assert logged[0].startswith("serve: 127.0.0.1 GET /healthz 200 ")
    assert logged[1].startswith("serve: 127.0.0.1 POST /healthz 413 ")


def test_serve_on_a_taken_port_exits_75(served: Path, cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = cli("-C", served, "serve", "--port", str(port))
    assert res.exit_code == 75
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr


# ---------------------------------------------------------------- group commit


def test_concurrent_writes_share_commits_and_a_failing_one_is_undone_alone(served: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from campaignctl.store import meta, utcnow

    with web_rig(served) as rig:
        now = utcnow()

        def put(i: int) -> int:
            def fn(session: Any) -> int:
                if i == 13:
                    meta.set_cursor(session, "unlucky", "written then undone", now)
                    raise ValueError("refused")
                meta.set_cursor(session, f"ch{i}", str(i), now)
                return i

            return rig.web.write(fn)

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(put, i) for i in range(200)]
        results = [f.exception() or f.result() for f in futures]
        batches = rig.web.writer.batches
        with rig.store.read() as session:
            cursors = {ch: meta.cursor(session, ch) for ch in ("ch0", "ch199", "unlucky")}
    assert isinstance(results[13], ValueError)
    assert [r for i, r in enumerate(results) if i != 13] == [i for i in range(200) if i != 13]
    assert cursors == {"ch0": "0", "ch199": "199", "unlucky": None}
    assert 1 <= batches < 200  # commits were shared
