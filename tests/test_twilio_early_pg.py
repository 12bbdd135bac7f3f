"""On PostgreSQL the engine's record transaction and a status callback's run side by side (the
record is `Store.write(shared=True)`): a callback that looks for its sid while the record that
writes it is not committed, and a record that looks for kept callbacks before the callback's
is, would each miss the other. `locks.EARLY_CALLBACKS` orders them: here the callback comes
while the real engine holds it, waits, and then finds the sid. (On SQLite the database's one
write lock does the same.)"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from campaignctl.config import load
from campaignctl.engine import Engine
from campaignctl.store import Store, locks
from tests.fakes.twilio import FakeTwilio
from tests.support import T0, add_leads, write_project
from tests.support.databases import DATABASE_ENV
from tests.support.web import ENV, server_section, web_rig
from tests.test_twilio_early import CAMPAIGN, callback, events, kept, sent
from tests.test_web_twilio import OUR_SMS

EARLY_KEY = locks.key_of(locks.EARLY_CALLBACKS)


def test_a_callback_during_the_record_waits_for_it_and_finds_its_sid(
    tmp_path: Path, pg_url: str, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_ENV, pg_url)
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    channels = f'[channels.sms]\nprovider = "twilio"\nfrom = "{OUR_SMS}"\n'
    channels += f'api_base = "{fake_twilio.url}"\n\n{server_section()}'
    write_project(tmp_path, channels, CAMPAIGN)
    add_leads(tmp_path, 1)
    cfg = load(tmp_path / "campaigns.toml")
    with web_rig(tmp_path, clock=lambda: T0) as rig:
        store = Store.for_config(cfg)  # the engine's own connections, as `send`'s
        eng = Engine(cfg, store)
        answers: list[int] = []
        waited: list[bool] = []

        def waiting() -> bool:
            with rig.store.engine.connect() as c:
                q = (
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                )
                return bool(c.execute(text(q)).scalar())

        def held(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
            """The record transaction holds the lock (and has written the sid, uncommitted):
            Twilio's callback comes now, and must wait for the commit."""
            if "pg_advisory_xact_lock" not in statement or params.get("key") != EARLY_KEY:
                return
            sid = fake_twilio.messages[-1]["sid"]
            post = threading.Thread(target=lambda: answers.append(callback(rig, sid, "delivered")))
            post.start()
            deadline = time.monotonic() + 30
            while not waiting() and post.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            waited.append(post.is_alive())

        event.listen(store.engine, "after_cursor_execute", held)
        try:
            res = eng.run_pass(T0, random.Random(1))
        finally:
            event.remove(store.engine, "after_cursor_execute", held)
            store.close()
        assert res.total("sent") == 1
        deadline = time.monotonic() + 30
        while not answers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert waited == [True]  # the callback waited for the record's commit
        assert answers == [204]
        ((sid, message_id),) = sent(rig.store).items()
        assert events(rig.store) == [("delivered", f"delivered:{sid}", message_id)]
        assert kept(rig.store) == []
