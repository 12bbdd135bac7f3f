"""Outgoing hooks (`[[hooks]]`, campaignctl/hooks.py): each event POSTed as signed JSON to a real
HTTP server on loopback, once per fact, at least once, in order per lead, retried with backoff."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from campaignctl import hooks
from campaignctl.config import load
from campaignctl.store import Store, utcnow
from campaignctl.store import hooks as store_hooks
from tests.fakes.http import LoopbackHTTP, Request, Response
from tests.support.cli import Cli
from tests.support.project import MINIMAL_TOML

KEY = "hook-signing-key-0123456789"
ENV = {"HOOK_KEY": KEY}


class Receiver:
    """A webhook receiver: answers each POST with the next status of `statuses` (then 200)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.http = LoopbackHTTP(self._handle).start()

    def _handle(self, req: Request) -> Response:
        return Response(self.statuses.pop(0) if self.statuses else 200, {"ok": True})

    @property
    def posts(self) -> list[Request]:
        return [r for r in self.http.requests if r.method == "POST"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.http.stop()


@pytest.fixture
def hooked(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The minimal project (an email, then an SMS two days later, to leads with status new),
    with a hook for sent, optout and replied."""
    monkeypatch.setenv("HOOK_KEY", KEY)
    (tmp_path / "campaigns.toml").write_text(
        MINIMAL_TOML
        + f'\n[[hooks]]\nurl = "{receiver.http.url}/in"\nevents = ["sent", "optout", "replied"]'
        + '\nsecret_env = "HOOK_KEY"\n'
    )
    (tmp_path / "leads.csv").write_text(
        "email,phone,first_name\nana@example.com,+639171234567,Ana\nben@example.com,,Ben\n"
    )
    return tmp_path


def _deliver(folder: Path, at: datetime) -> hooks.Delivered:
    cfg = load(folder / "campaigns.toml")
    store = Store.for_config(cfg)
    try:
        return hooks.deliver(store, cfg, ENV, lambda: at, rng=random.Random(1))
    finally:
        store.close()


def _queue_events(folder: Path, at: datetime) -> int:
    cfg = load(folder / "campaigns.toml")
    store = Store.for_config(cfg)
    try:
        return hooks.queue_events(store, cfg, at)
    finally:
        store.close()


def _rows(folder: Path) -> list[tuple[str, str, int]]:
    store = Store.for_config(load(folder / "campaigns.toml"))
    with store.read() as session:
        rows = store_hooks.due(session, [], utcnow(), 1000)  # no hook: nothing
        assert rows == []
        from sqlalchemy import select

        from campaignctl.store.tables import HOOK_DELIVERY as D

        out = [
            (r.event, r.idem_key, r.attempts)
            for r in session.connection().execute(select(D).order_by(D.c.id))
        ]
    store.close()
    return out


def _send_keyless(hooked: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`send` without the hook's key: it queues the rows and cannot post them (they wait)."""
    assert cli("-C", hooked, "leads", "import", "leads.csv").exit_code == 0
    with monkeypatch.context() as m:
        m.delenv("HOOK_KEY")
        res = cli("-C", hooked, "send")
    assert res.exit_code == 0, res.output
    assert "hooks[0].secret_env: environment variable HOOK_KEY is not set" in res.stderr


def test_sent_is_posted_signed_once_per_message(
    hooked: Path, cli: Cli, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _send_keyless(hooked, cli, monkeypatch)
    queued = _rows(hooked)
    assert [(e, a) for e, _, a in queued] == [("sent", 0), ("sent", 0)]
    now = utcnow()
    done = _deliver(hooked, now)
    assert (done.delivered, done.failed) == (2, 0)
    assert len(receiver.posts) == 2
    bodies = []
    for post in receiver.posts:
        assert post.path == "/in"
        assert post.headers["content-type"] == "application/json"
        assert post.headers["x-campaignctl-event"] == "sent"
        assert hooks.verify(
            KEY, post.body, post.headers["x-campaignctl-signature"], int(now.timestamp())
        )
        assert not hooks.verify(
            "another-key-0123456789",
            post.body,
            post.headers["x-campaignctl-signature"],
            int(now.timestamp()),
        )
        body = post.json()
        assert post.headers["idempotency-key"] == body["id"]
        assert re.fullmatch(r"message:\d+:sent", body["id"])
        bodies.append(body)
    assert sorted(b["lead"]["email"] for b in bodies) == ["ana@example.com", "ben@example.com"]
    assert {b["message"]["campaign"] for b in bodies} == {"welcome"}
    assert {b["message"]["step"] for b in bodies} == {"hello"}
    # delivered rows are never posted again
    assert _deliver(hooked, now + timedelta(hours=2)).delivered == 0
    assert len(receiver.posts) == 2


def test_a_failing_endpoint_is_retried_with_backoff_and_holds_the_leads_later_events(
    hooked: Path, cli: Cli, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _send_keyless(hooked, cli, monkeypatch)
    assert _queue_events(hooked, utcnow()) == 0  # the hook is seen from now on
    assert cli("-C", hooked, "leads", "optout", "ana@example.com").exit_code == 0
    assert _queue_events(hooked, utcnow()) == 1
    assert _queue_events(hooked, utcnow()) == 0  # each event is queued once
    receiver.statuses = [500, 503]  # the first two POSTs fail
    now = utcnow()
    first = _deliver(hooked, now)
    assert (first.delivered, first.failed) == (0, 2)
    assert first.errors is not None
    assert all(e.endswith("HTTP 500") or e.endswith("HTTP 503") for e in first.errors)
    # Ana's optout waits behind her failed `sent`; nothing is due again before the backoff
    assert {p.json()["event"] for p in receiver.posts} == {"sent"}
    assert _deliver(hooked, now + timedelta(seconds=1)).delivered == 0
    later = _deliver(hooked, now + timedelta(minutes=2))
    assert later.delivered == 2  # both `sent` rows; Ana's optout was still behind hers
    final = _deliver(hooked, now + timedelta(minutes=3))
    assert final.delivered == 1
    events = [(p.json()["lead"]["email"], p.json()["event"]) for p in receiver.posts]
    ana = [e for who, e in events if who == "ana@example.com"]
    assert ana == ["sent", "sent", "optout"]  # the failed one again, then the next, in order
    keys = [p.headers["idempotency-key"] for p in receiver.posts]
    assert len(set(keys)) == 3  # a retry carries the same key
    assert [a for _, _, a in _rows(hooked)] == [2, 2, 1]


def test_a_refused_connection_is_an_error_not_a_crash(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.http import free_port

    monkeypatch.setenv("HOOK_KEY", KEY)

    (tmp_path / "campaigns.toml").write_text(
        MINIMAL_TOML
        + f'\n[[hooks]]\nurl = "http://127.0.0.1:{free_port()}/x"\nevents = ["sent"]\n'
        + 'secret_env = "HOOK_KEY"\n'
    )
    (tmp_path / "leads.csv").write_text("email\nana@example.com\n")
    assert cli("-C", tmp_path, "leads", "import", "leads.csv").exit_code == 0
    res = cli("-C", tmp_path, "send")  # its own POST is refused: a warning, not a failure
    assert res.exit_code == 0, res.output
    assert "hooks: posted 0, failed 1" in res.stdout
    assert "campaignctl: warning: hooks: http://127.0.0.1:" in res.stderr
    assert "Traceback" not in res.output
    done = _deliver(tmp_path, utcnow() + timedelta(hours=2))  # past the backoff
    assert (done.delivered, done.failed) == (0, 1)
    assert done.errors is not None
    assert "URLError" in done.errors[0] or "ConnectionRefusedError" in done.errors[0]


def test_events_before_the_hook_was_first_seen_are_not_announced(
    hooked: Path, cli: Cli, receiver: Receiver
) -> None:
    toml = hooked / "campaigns.toml"
    with_hook = toml.read_text()
    toml.write_text(MINIMAL_TOML)  # no hook yet
    assert cli("-C", hooked, "leads", "import", "leads.csv").exit_code == 0
    assert cli("-C", hooked, "leads", "optout", "ben@example.com").exit_code == 0
    assert _queue_events(hooked, utcnow()) == 0
    toml.write_text(with_hook)
    assert _queue_events(hooked, utcnow()) == 0
    assert cli("-C", hooked, "leads", "optout", "ana@example.com").exit_code == 0
    assert _queue_events(hooked, utcnow() + timedelta(seconds=1)) == 1
    assert _deliver(hooked, utcnow() + timedelta(seconds=1)).delivered == 1
    assert [p.json()["lead"]["email"] for p in receiver.posts] == ["ana@example.com"]


def test_a_leased_row_is_not_posted_by_a_second_process(
    hooked: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _send_keyless(hooked, cli, monkeypatch)
    cfg = load(hooked / "campaigns.toml")
    store = Store.for_config(cfg)
    now = utcnow()
    with store.write() as session:
        row = store_hooks.due(session, [cfg.hooks[0].url], now, 1)[0]
        assert store_hooks.lease(session, row.id, now, now + hooks.LEASE)
        assert not store_hooks.lease(session, row.id, now, now + hooks.LEASE)
        # the lease expires (the process died mid-POST): the row is taken again
        later = now + hooks.LEASE + timedelta(seconds=1)
        assert store_hooks.lease(session, row.id, later, later + hooks.LEASE)
    store.close()


def test_check_names_a_hook_without_its_key(
    hooked: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOK_KEY")
    res = cli("-C", hooked, "check")
    assert res.exit_code == 1
    assert "hooks[0].secret_env: environment variable HOOK_KEY is not set" in res.stdout


def test_check_refuses_an_unknown_hook_event(hooked: Path, cli: Cli) -> None:
    toml = hooked / "campaigns.toml"
    toml.write_text(toml.read_text().replace('"replied"]', '"replyed"]'))
    res = cli("-C", hooked, "check")
    assert res.exit_code == 1
    assert "hooks.0.events.2" in res.stdout or "hooks[0].events[2]" in res.stdout


def test_status_shows_what_waits_and_the_last_error(
    hooked: Path, cli: Cli, receiver: Receiver
) -> None:
    assert cli("-C", hooked, "leads", "import", "leads.csv").exit_code == 0
    receiver.statuses = [500, 500]  # what send posts at its end fails: quietly, for cron
    res = cli("-C", hooked, "send", "--quiet")
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "")
    assert len(receiver.posts) == 2
    res = cli("-C", hooked, "status", "--format", "json")
    [hook] = json.loads(res.stdout)["hooks"]
    assert hook["url"].endswith("/in")
    assert hook["pending"] == 2
    assert hook["last_error"] == "HTTP 500"
    table = cli("-C", hooked, "status").stdout
    assert f"hook {receiver.http.url}/in: 2 waiting since " in table
    assert "last error: HTTP 500 (1 attempt(s))" in table


def test_the_daemon_posts_hooks_and_serves_with_serve(
    hooked: Path, cli: Cli, receiver: Receiver
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from tests.support.project import REPO
    from tests.support.web import ENV as WEB_ENV
    from tests.support.web import server_section

    toml = hooked / "campaigns.toml"
    toml.write_text(toml.read_text() + "\n" + server_section() + '\n[daemon]\ntick = "1s"\n')
    assert cli("-C", hooked, "leads", "import", "leads.csv").exit_code == 0
    log = hooked / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "campaignctl",
                "-C",
                str(hooked),
                "daemon",
                "--no-live",
                "--serve",
                "--port",
                "0",
            ],
            env={**os.environ, "PYTHONPATH": str(REPO), **ENV, **WEB_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while len(receiver.posts) < 2 and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
            assert len(receiver.posts) == 2, log.read_text()
            url = re.search(r"serve serving (http://127\.0\.0\.1:\d+)", log.read_text())
            assert url, log.read_text()
            assert httpx.get(f"{url.group(1)}/healthz", timeout=10).text == "ok\n"
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "hooks delivered=2 failed=0" in text
    assert "Traceback" not in text
    assert {p.json()["event"] for p in receiver.posts} == {"sent"}


def test_send_posts_what_it_recorded_so_cron_needs_no_daemon(
    hooked: Path, cli: Cli, receiver: Receiver
) -> None:
    assert cli("-C", hooked, "leads", "import", "leads.csv").exit_code == 0
    res = cli("-C", hooked, "send")
    assert res.exit_code == 0, res.output
    assert "hooks: posted 2, failed 0" in res.stdout
    assert sorted(p.json()["lead"]["email"] for p in receiver.posts) == [
        "ana@example.com",
        "ben@example.com",
    ]
    assert {p.json()["event"] for p in receiver.posts} == {"sent"}
    assert _deliver(hooked, utcnow() + timedelta(hours=2)).delivered == 0  # nothing left
    # a second run with nothing to send posts nothing, and says nothing of hooks
    again = cli("-C", hooked, "send")
    assert "hooks:" not in again.stdout
    assert len(receiver.posts) == 2


def test_sync_posts_the_events_recorded_since(hooked: Path, cli: Cli, receiver: Receiver) -> None:
    assert cli("-C", hooked, "leads", "import", "leads.csv").exit_code == 0
    assert cli("-C", hooked, "send", "--quiet").exit_code == 0  # posts both `sent`
    assert cli("-C", hooked, "leads", "optout", "ana@example.com").exit_code == 0
    res = cli("-C", hooked, "sync", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["hooks"] == {
        "delivered": 1,
        "failed": 0,
        "errors": [],
        "missing_keys": [],
    }
    assert [p.json()["event"] for p in receiver.posts][-1] == "optout"
    assert len(receiver.posts) == 3
