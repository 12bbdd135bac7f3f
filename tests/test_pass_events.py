"""What happened to each message reaches the listener as its batch commits, and the pass keeps
none of it then: a pass of a million messages holds no event (issue 15 #1), and `send` and the
daemon tell of each message while the pass goes on, not when it ends."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from campaignctl.engine import Engine
from campaignctl.store import Store
from tests.support import T0, add_leads, messages, project
from tests.test_dry_run_sample import UNLIMITED

# on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

#: one SMS step, no limits; a lead without a nickname cannot be rendered
ONE_STEP = UNLIMITED.replace("first_name", "nickname")


def test_each_event_is_heard_once_its_batch_has_committed(tmp_path: Path) -> None:
    store = Store.for_config(project(tmp_path, ONE_STEP))
    add_leads(store, 4, attrs={"nickname": "Bee"})
    add_leads(store, 1, start=9)  # no nickname: its message fails to render
    heard: list[tuple[dict[str, Any], dict[int | None, str]]] = []

    def listen(ev: dict[str, Any]) -> None:  # what another reader of the database sees then
        heard.append((ev, {m.id: m.state for m in messages(store)}))

    eng = Engine(project(tmp_path, ONE_STEP), store, batch=2)
    res = eng.run_pass(T0, random.Random(1), on_event=listen)
    assert (res.total("sent"), res.total("failed")) == (4, 1)
    assert res.events == []  # handed on, not kept
    kinds = sorted(ev["event"] for ev, _ in heard)
    assert kinds == ["failed", "sent", "sent", "sent", "sent"]
    for ev, states in heard:  # committed before it was told
        assert states[ev["id"]] == ev["event"]
    # told batch by batch: the first message's event came while others were still to send
    assert list(heard[0][1].values()).count("pending") >= 2


def test_without_a_listener_the_pass_keeps_its_events(tmp_path: Path) -> None:
    store = Store.for_config(project(tmp_path, ONE_STEP))
    add_leads(store, 3, attrs={"nickname": "Bee"})
    res = Engine(project(tmp_path, ONE_STEP), store, batch=2).run_pass(T0, random.Random(1))
    assert {e["id"] for e in res.events if e["event"] == "sent"} == {m.id for m in messages(store)}
    assert len(res.events) == 3
