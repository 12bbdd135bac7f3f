"""Twilio status callbacks that beat the engine: the engine records a batch's sids only after
sending the whole batch, and Twilio's callbacks for its first messages often come sooner. Such
a callback is kept (`early_callback`), recorded in the transaction that records the sid, or by
`sync`, exactly once, and forgotten after 7 days when the sid never becomes ours.

The engine sends through the loopback fake Twilio, whose `on_create` posts the signed callback
to the real app (Starlette's test client) before the create is answered: the callback is in
the database before the sid is. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlmodel import col
from sqlmodel import select as sm_select

from campaignctl.config import load
from campaignctl.engine import Engine
from campaignctl.inbound import keep_early
from campaignctl.store import Event, Message, Store
from campaignctl.store.tables import EARLY_CALLBACK
from campaignctl.sync import sync
from tests.fakes.twilio import FakeTwilio
from tests.support import T0, add_leads, write_project
from tests.support.cli import Cli, status_steps
from tests.support.web import ENV, WebRig, server_section, web_rig
from tests.test_web_twilio import OUR_SMS, signed, status_form

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

CAMPAIGN = """
[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name }}, reply STOP to opt out."
"""


@pytest.fixture
def folder(tmp_path: Path, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Twilio SMS channel on the fake, `[server]`, and 3 leads enrolled by the first pass."""
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    write_project(
        tmp_path,
        f"""\
[channels.sms]
provider = "twilio"
from = "{OUR_SMS}"
api_base = "{fake_twilio.url}"

{server_section()}""",
        CAMPAIGN,
    )
    add_leads(tmp_path, 3)
    return tmp_path


class Clock:
    """The web side's clock: T0, moved on a second at each reading."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> Any:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def rig(folder: Path) -> Iterator[WebRig]:
    with web_rig(folder, clock=Clock()) as r:
        yield r


def callback(rig: WebRig, sid: str, status: str) -> int:
    """Post Twilio's signed status callback for `sid`; the answer's status code."""
    body, headers = signed("/twilio/status", status_form(sid, status))
    code: int = rig.client.post("/twilio/status", content=body, headers=headers).status_code
    return code


def kept(store: Store) -> list[tuple[str, str]]:
    with store.read() as s:
        c = EARLY_CALLBACK.c
        q = select(c.provider_id, c.status).order_by(c.id)
        return [(r.provider_id, r.status) for r in s.connection().execute(q)]


def events(store: Store) -> list[tuple[str, str | None, int | None]]:
    with store.read() as s:
        q = sm_select(Event).order_by(col(Event.id))
        return [(e.kind, e.source_id, e.message_id) for e in s.exec(q)]


def sent(store: Store) -> dict[str, int]:
    """sid -> message id of every message sent."""
    with store.read() as s:
        rows = s.exec(sm_select(Message).where(Message.state == "sent"))
        return {m.provider_id: m.id for m in rows if m.provider_id and m.id}


def send(folder: Path, store: Store) -> None:
    res = Engine(load(folder / "campaigns.toml"), store).run_pass(T0, random.Random(1))
    assert res.total("sent") == 3


def before_its_sid(
    fake: FakeTwilio, rig: WebRig, *statuses: str, only_first: bool = False
) -> list[str]:
    """Post `statuses` (in this order) for each message the fake accepts, before it answers;
    the sids they were posted for (and each answer was 204, nothing recorded yet)."""
    posted: list[str] = []

    def on_create(msg: dict[str, Any]) -> None:
        if only_first and posted:
            return
        for status in statuses:
            assert callback(rig, msg["sid"], status) == 204
        assert msg["sid"] not in sent(rig.store)  # the sid is not recorded yet
        posted.append(msg["sid"])

    fake.on_create = on_create
    return posted


def test_a_callback_before_its_sid_is_recorded_with_the_send_once(
    folder: Path, fake_twilio: FakeTwilio, rig: WebRig, cli: Cli
) -> None:
    posted = before_its_sid(fake_twilio, rig, "delivered")
    send(folder, rig.store)
    ours = sent(rig.store)
    assert sorted(posted) == sorted(ours)
    assert sorted(events(rig.store)) == sorted(
        ("delivered", f"delivered:{sid}", ours[sid]) for sid in posted
    )
    assert kept(rig.store) == []
    assert status_steps(cli, folder)["hello"]["delivered"] == 3
    # Twilio's retry of the same callback, now that the sid is ours: nothing more
    assert callback(rig, posted[0], "delivered") == 204
    assert len(events(rig.store)) == 3


def test_a_failure_settling_the_kept_callbacks_leaves_the_sends_recorded(
    folder: Path,
    fake_twilio: FakeTwilio,
    rig: WebRig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Settling runs in a savepoint of the batch's record: when it fails (here a fault put in
    the recording of callbacks), the sends stay recorded as sent, the callbacks stay kept,
    and `sync` records them once the fault is gone. Before, the whole record rolled back and
    the sent messages were left `sending`, to be reconciled as uncertain."""
    import campaignctl.sync as sync_module

    posted = before_its_sid(fake_twilio, rig, "delivered")
    real = sync_module.record_received

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a fault while recording callbacks")

    monkeypatch.setattr(sync_module, "record_received", broken)
    send(folder, rig.store)
    assert sorted(sent(rig.store)) == sorted(posted)  # recorded: the record stood
    assert sorted(kept(rig.store)) == sorted((sid, "delivered") for sid in posted)
    assert "stay kept (campaignctl sync records them): RuntimeError" in caplog.text
    monkeypatch.setattr(sync_module, "record_received", real)
    sync(load(folder / "campaigns.toml"), rig.store, T0 + timedelta(minutes=1))
    assert kept(rig.store) == []
    assert sorted(e for e in events(rig.store) if e[0] == "delivered") == sorted(
        ("delivered", f"delivered:{sid}", sent(rig.store)[sid]) for sid in posted
    )


def test_a_callback_posted_twice_before_its_sid_is_kept_once(
    folder: Path, fake_twilio: FakeTwilio, rig: WebRig
) -> None:
    seen: list[list[tuple[str, str]]] = []
    posted = before_its_sid(fake_twilio, rig, "undelivered", "undelivered", only_first=True)
    inner = fake_twilio.on_create
    assert inner is not None

    def on_create(msg: dict[str, Any]) -> None:
        inner(msg)
        seen.append(kept(rig.store))

    fake_twilio.on_create = on_create
    send(folder, rig.store)
    assert seen[0] == [(posted[0], "undelivered")]
    assert events(rig.store) == [
        ("undelivered", f"undelivered:{posted[0]}", sent(rig.store)[posted[0]])
    ]
    assert kept(rig.store) == []


def test_an_older_status_after_a_newer_one_changes_nothing(
    folder: Path, fake_twilio: FakeTwilio, rig: WebRig, cli: Cli
) -> None:
    posted = before_its_sid(fake_twilio, rig, "read", "delivered", only_first=True)
    send(folder, rig.store)
    sid = posted[0]
    assert events(rig.store) == [("delivered", f"read:{sid}", sent(rig.store)[sid])]
    assert kept(rig.store) == []
    assert callback(rig, sid, "delivered") == 204  # late, by the webhook itself
    assert len(events(rig.store)) == 1
    steps = status_steps(cli, folder)["hello"]
    assert (steps["read"], steps["delivered"]) == (1, 0)


def test_a_kept_callback_for_a_sid_never_ours_goes_after_7_days(
    folder: Path, fake_twilio: FakeTwilio, rig: WebRig
) -> None:
    cfg = load(folder / "campaigns.toml")
    before_its_sid(fake_twilio, rig, "delivered", only_first=True)
    send(folder, rig.store)
    foreign = "SM" + "f" * 32  # sent from our number by another tool
    assert callback(rig, foreign, "delivered") == 204
    assert kept(rig.store) == [(foreign, "delivered")]
    with rig.store.read() as s:  # nobody's phone number is kept
        (resource,) = s.connection().execute(select(EARLY_CALLBACK.c.resource)).scalars()
    assert resource["from"] == OUR_SMS
    assert "to" not in resource
    # sync records what matches and keeps the rest for 7 days
    sync(cfg, rig.store, T0 + timedelta(days=6))
    assert kept(rig.store) == [(foreign, "delivered")]
    assert len(events(rig.store)) == 1
    sync(cfg, rig.store, T0 + timedelta(days=7, seconds=10))
    assert kept(rig.store) == []
    assert len(events(rig.store)) == 1


def test_sync_records_a_kept_callback_once_its_sid_is_ours(
    folder: Path, fake_twilio: FakeTwilio, rig: WebRig
) -> None:
    """The sid became ours another way than the batch's record (here: the callback came
    before the webhook could know it, and the batch's settlement had nothing to do): sync."""
    send(folder, rig.store)
    sid = next(iter(sent(rig.store)))
    store = rig.store
    with store.write() as s:  # a callback kept while its message was uncertain
        resource = {"sid": sid, "direction": "outbound-api", "status": "delivered"}
        keep_early(s, "sms", resource, T0)
    sync(load(folder / "campaigns.toml"), store, T0 + timedelta(hours=1))
    assert events(store) == [("delivered", f"delivered:{sid}", sent(store)[sid])]
    assert kept(store) == []


def test_a_callback_kept_while_its_message_was_uncertain_is_recorded_by_the_reconcile(
    folder: Path, fake_twilio: FakeTwilio, rig: WebRig
) -> None:
    """The send's outcome was lost (its process killed): the message is uncertain, without
    its sid, when Twilio's callback comes, so it is kept; the next pass asks Twilio (one
    list), finds the sid, and records the kept status in the same transaction."""
    send(folder, rig.store)
    store = rig.store
    first = sorted(sent(store).items(), key=lambda kv: kv[1])[0]
    sid, message_id = first
    with store.write() as s:
        m = s.get(Message, message_id)
        assert m is not None
        m.state, m.provider_id, m.sent_at = "uncertain", None, None
        s.add(m)
    assert callback(rig, sid, "delivered") == 204
    assert kept(store) == [(sid, "delivered")]
    engine = Engine(load(folder / "campaigns.toml"), store)
    engine.run_pass(T0 + timedelta(minutes=5), random.Random(1))
    assert sent(store)[sid] == message_id  # reconciled: the provider has it
    assert events(store) == [("delivered", f"delivered:{sid}", message_id)]
    assert kept(store) == []


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """Every statement `store` runs inside the block (SQLAlchemy's own event)."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", listen)


def count_kept(store: Store) -> int:
    with store.read() as s:
        n = s.connection().execute(select(func.count()).select_from(EARLY_CALLBACK)).scalar()
    return int(n or 0)


def test_a_batch_with_no_kept_callback_costs_one_look_up_and_no_write(
    folder: Path, rig: WebRig
) -> None:
    with statements(rig.store) as seen:
        send(folder, rig.store)
    about = [s for s in seen if "early_callback" in s]
    assert len(about) == 1  # one batch, one indexed look-up
    assert about[0].lstrip().upper().startswith("SELECT")
    with rig.store.read() as s:
        assert (
            s.connection().execute(select(func.count()).select_from(EARLY_CALLBACK)).scalar() == 0
        )


def test_no_twilio_channel_no_look_up(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        '[channels.sms]\nprovider = "outbox"\nkind = "sms"\n',
        CAMPAIGN,
    )
    add_leads(tmp_path, 3)
    cfg = load(tmp_path / "campaigns.toml")
    store = Store.for_config(cfg)
    try:
        with statements(store) as seen:
            send(tmp_path, store)
        assert seen
        assert not [s for s in seen if "early_callback" in s]
    finally:
        store.close()
