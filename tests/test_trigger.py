"""`campaignctl trigger` (kind = "trigger" campaigns): an event enrols its matches once, with
its values as `item` in the audience and the templates (issue 12 #1)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import add_leads, outbox_files
from tests.support.project import OUTBOX_CHANNELS, write_project
from tests.support.rows import sql_rows

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

TRIGGER = """\
[campaigns.new-listing]
kind = "trigger"
status = "active"
audience = "lead.budget_max >= item.price and item.city in lead.areas"

[[campaigns.new-listing.steps]]
name = "alert"
channel = "sms"
body = "{{ item.address }} just listed at {{ item.price }}. Reply STOP to opt out."
"""

EVENT = {"id": "listing-42", "price": 300000, "city": "Makati", "address": "12 Rada St"}


@pytest.fixture
def listing(tmp_path: Path) -> Path:
    write_project(tmp_path, OUTBOX_CHANNELS, TRIGGER, tz="UTC", region=None)
    add_leads(
        tmp_path,
        {"phone": "+12125550001", "attrs": {"budget_max": 500000, "areas": ["Makati", "Pasig"]}},
        {"phone": "+12125550002", "attrs": {"budget_max": 100000, "areas": ["Makati"]}},
        {"phone": "+12125550003", "attrs": {"budget_max": 900000, "areas": "Taguig; Makati"}},
        {"phone": "+12125550004", "attrs": {"budget_max": 900000, "areas": ["Pasig"]}},
        {"phone": "+12125550005", "attrs": {"areas": ["Makati"]}},
    )
    return tmp_path


def _event(folder: Path, event: dict[str, object] | str = EVENT, name: str = "event.json") -> Path:
    path = folder / name
    path.write_text(event if isinstance(event, str) else json.dumps(event))
    return path


def _db(folder: Path, sql: str) -> list[tuple[object, ...]]:
    return sql_rows(folder / "campaignctl.db", sql)


def test_trigger_enrols_matches_and_messages_carry_the_item(cli, listing):
    r = cli("-C", listing, "trigger", "new-listing", "--data", _event(listing))
    assert r.exit_code == 0, r.output
    assert "enrolled 2 leads" in r.stdout
    assert _db(listing, "SELECT lead_id FROM enrolment ORDER BY lead_id") == [(1,), (3,)]
    r = cli("-C", listing, "send")
    assert r.exit_code == 0, r.output
    sent = outbox_files(listing / "outbox")
    assert sorted(m["to"] for m in sent) == ["+12125550001", "+12125550003"]
    assert all("12 Rada St just listed at 300000" in m["body"] for m in sent)


def test_the_same_event_twice_enrols_nobody_the_second_time(cli, listing):
    assert cli("-C", listing, "trigger", "new-listing", "--data", _event(listing)).exit_code == 0
    again = {**EVENT, "id": "listing-42", "price": 1}  # same id, other values: still the same
    r = cli("-C", listing, "trigger", "new-listing", "--data", _event(listing, again))
    assert r.exit_code == 0, r.output
    assert "already received" in r.stdout
    assert "enrolled nobody" in r.stdout
    assert _db(listing, "SELECT count(*) FROM message") == [(2,)]
    assert _db(listing, "SELECT event_id, enrolled FROM trigger_event") == [("listing-42", 2)]


def test_a_second_event_reaches_the_same_lead_again(cli, listing):
    assert cli("-C", listing, "trigger", "new-listing", "--data", _event(listing)).exit_code == 0
    assert cli("-C", listing, "send").exit_code == 0
    second = {**EVENT, "id": 43, "address": "7 Legaspi St"}
    r = cli("-C", listing, "trigger", "new-listing", "--data", _event(listing, second))
    assert "enrolled 2 leads" in r.stdout, r.output
    assert cli("-C", listing, "send").exit_code == 0
    bodies = sorted(m["body"] for m in outbox_files(listing / "outbox") if m["to"].endswith("01"))
    assert len(bodies) == 2
    assert "7 Legaspi St" in bodies[1] + bodies[0]
    assert _db(listing, "SELECT count(*) FROM enrolment") == [(2,)]


def test_event_from_stdin_and_json_output(cli, listing):
    r = cli(
        "-C", listing, "trigger", "new-listing", "--data", "-", "--format", "json",
        input=json.dumps(EVENT),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["enrolled"] == 2


@pytest.mark.sqlite_only  # the file's bytes
def test_dry_run_lists_who_and_writes_nothing(cli, listing):
    assert cli("-C", listing, "status").exit_code == 0  # the database exists
    before = (listing / "campaignctl.db").read_bytes()
    r = cli(
        "-C", listing, "trigger", "new-listing", "--data", _event(listing), "--dry-run",
        "--format", "json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["would_enrol"] == 2
    assert [x["phone"] for x in out["leads"]] == ["+12125550001", "+12125550003"]
    r = cli("-C", listing, "trigger", "new-listing", "--data", _event(listing), "--dry-run")
    assert "would enrol 2 leads" in r.stdout
    assert "+12125550003" in r.stdout
    assert _db(listing, "SELECT count(*) FROM trigger_event") == [(0,)]
    assert _db(listing, "SELECT count(*) FROM message") == [(0,)]
    assert (listing / "campaignctl.db").read_bytes() == before


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"id": 1,', "not JSON (line 1, column"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ('{"price": 1}', 'has no "id"'),
        ('{"id": [1]}', '"id" must be a non-empty string or an integer, not an array'),
        ('{"id": true}', "not a boolean"),
    ],
)
def test_bad_events_exit_2_naming_the_problem(cli, listing, text, says):
    r = cli("-C", listing, "trigger", "new-listing", "--data", _event(listing, text))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("campaignctl: error: ")
    assert "event.json" in r.stderr
    assert says in r.stderr
    assert "Traceback" not in r.output


def test_an_event_without_a_key_the_audience_reads_exits_2(cli, listing):
    r = cli("-C", listing, "trigger", "new-listing", "--data", _event(listing, {"id": 1}))
    assert r.exit_code == 2
    assert "the event has no 'price'" in r.stderr


def test_trigger_refuses_a_sequence(cli, listing):
    r = cli("-C", listing, "trigger", "nope", "--data", _event(listing))
    assert r.exit_code == 2


def test_racing_processes_enrol_one_set(listing):
    path = _event(listing)
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(listing), "trigger", "new-listing"]
    procs = [
        subprocess.Popen([*cmd, "--data", str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("enrolled 2 leads" in o for o in outs) == 1
    assert sum("enrolled nobody" in o for o in outs) == 3
    assert _db(listing, "SELECT count(*) FROM message") == [(2,)]
    assert _db(listing, "SELECT count(*) FROM trigger_event") == [(1,)]


def test_check_wants_steps_on_a_trigger_campaign(cli, tmp_path):
    write_project(tmp_path, OUTBOX_CHANNELS, '[campaigns.t]\nkind = "trigger"\n', region=None)
    r = cli("-C", tmp_path, "check")
    assert r.exit_code == 1
    assert "campaigns.t.steps" in r.output
    assert "trigger campaign needs" in r.output


@pytest.mark.sqlite_only  # SQLite's table rebuild
def test_m016_keeps_messages_and_the_events_that_point_at_them(tmp_path):
    """The message table is rebuilt (its unique key gains `trigger_event`): rows, indexes and
    the inbound events referring to messages survive, foreign keys on."""
    from sqlalchemy import create_engine

    from campaignctl.store import Store, migrations

    db = tmp_path / "c.db"
    engine = create_engine(f"sqlite:///{db}")
    before = [m for m in migrations.MIGRATIONS if m[0] < "m016_trigger_event"]
    with engine.begin() as conn:
        for _, fn in before:
            fn(conn)
        conn.exec_driver_sql(
            "CREATE TABLE schema_migration (name VARCHAR PRIMARY KEY, applied_at DATETIME)"
        )
        for name, _ in before:
            conn.exec_driver_sql("INSERT INTO schema_migration VALUES (?, '2026-01-01')", (name,))
        conn.exec_driver_sql(
            "INSERT INTO lead (id, email, created_at, updated_at) VALUES (1, 'a@x.com', 0, 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO message (id, campaign, step, step_index, lead_id, channel, state, "
            "due_at, attempts, updated_at) VALUES (7, 'c', 's', 0, 1, 'email', 'sent', 0, 1, 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO event (lead_id, message_id, kind, occurred_at, recorded_at) "
            "VALUES (1, 7, 'reply', 0, 0)"
        )
    engine.dispose()
    Store(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("SELECT id, trigger_event FROM message").fetchall() == [(7, 0)]
        assert conn.execute("SELECT message_id FROM event").fetchall() == [(7,)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"ix_message_lead_id", "ix_message_state_due", "ix_message_channel_sent"} <= names
        with pytest.raises(sqlite3.IntegrityError):  # the same step for the same event
            conn.execute(
                "INSERT INTO message (campaign, step, step_index, lead_id, channel, state, "
                "due_at, attempts, updated_at) VALUES ('c', 's', 0, 1, 'email', 'sent', 0, 1, 0)"
            )
        conn.execute(  # another event's message for the same step and lead is a new row
            "INSERT INTO message (campaign, step, step_index, lead_id, channel, state, due_at, "
            "attempts, updated_at, trigger_event) VALUES ('c', 's', 0, 1, 'email', 'p', 0, 0, 0, 3)"
        )


TWO_STEPS = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.alerts]
kind = "trigger"
status = "active"
audience = "lead.budget_max >= item.price"

[[campaigns.alerts.steps]]
name = "alert"
channel = "sms"
body = "New: {{ item.address }}"

[[campaigns.alerts.steps]]
name = "reminder"
channel = "sms"
delay = "2d"
body = "Still available: {{ item.address }}"
"""


def test_later_steps_follow_their_own_event_and_the_enrolment_stays_active(tmp_path):
    """Engine-level, with time travel: two events two days apart for the same lead; each
    event's reminder renders its own item, and the enrolment takes both."""
    import random

    from campaignctl.engine import Engine
    from campaignctl.store import Store
    from campaignctl.trigger import run
    from tests.support import T0, days, project

    cfg = project(tmp_path, TWO_STEPS)
    store = Store.for_config(cfg)
    add_leads(store, {"phone": "+12125550001", "attrs": {"budget_max": 10}})
    eng, rng = Engine(cfg, store), random.Random(1)
    assert run(cfg, store, "alerts", {"id": 1, "price": 5, "address": "A St"}, T0).enrolled == 1
    assert eng.run_pass(T0, rng).total("sent") == 1
    assert (
        run(cfg, store, "alerts", {"id": 2, "price": 5, "address": "B St"}, T0 + days(1)).enrolled
        == 1
    )
    assert eng.run_pass(T0 + days(1), rng).total("sent") == 1
    assert eng.run_pass(T0 + days(2), rng).total("sent") == 1  # event 1's reminder
    assert eng.run_pass(T0 + days(3), rng).total("sent") == 1  # event 2's reminder
    store.close()
    bodies = [m["body"] for m in outbox_files(tmp_path / "outbox")]
    assert sorted(bodies) == sorted(
        ["New: A St", "New: B St", "Still available: A St", "Still available: B St"]
    )
    assert _db(tmp_path, "SELECT state FROM enrolment") == [("active",)]
