"""The engine with a simulated clock: enrolment, due times, limits, priorities, errors, recovery."""

from __future__ import annotations

import email
import random
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from campaignctl.channels.base import (
    ChannelError,
    ErrorKind,
    Outgoing,
    Reconciled,
    Reconciliation,
    Sent,
)
from campaignctl.engine import Engine
from campaignctl.runner import dry_run
from campaignctl.store import Enrolment, Message, Meta, OptOut, Store
from tests.support import (
    T0,
    ScriptedChannel,
    add_leads,
    days,
    messages,
    outbox_files,
    project,
    sent_times,
    transient,
)

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

SEQUENCE = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name }}"

[[campaigns.welcome.steps]]
name = "again"
channel = "sms"
delay = "0s"
body = "Hi again {{ lead.first_name }}"

[[campaigns.welcome.steps]]
name = "later"
channel = "sms"
delay = "2d"
body = "Later {{ lead.first_name }}"
"""


def test_sequence_due_times_follow_actual_sends(tmp_path: Path) -> None:
    cfg = project(tmp_path, SEQUENCE)
    store = Store.for_config(cfg)
    add_leads(store, 3)
    eng = Engine(cfg, store)
    rng = random.Random(1)
    res = eng.run_pass(T0, rng)
    # step 1 and the zero-delay step 2 go in the same pass; step 3 waits two days
    assert res.total("sent") == 6
    later = [m for m in messages(store) if m.step == "later"]
    assert {m.due_at for m in later} == {T0 + days(2)}
    assert eng.run_pass(T0 + days(1.9), rng).total("sent") == 0
    assert eng.run_pass(T0 + days(2), rng).total("sent") == 3
    with store.read() as s:
        assert {e.state for e in s.exec(select(Enrolment))} == {"completed"}
    files = outbox_files(tmp_path / "outbox")
    assert len(files) == 9
    assert {"to": "+12125550000", "from": "sms", "body": "Hi N0"} in files


def test_new_leads_join_a_sequence_on_a_later_pass(tmp_path: Path) -> None:
    cfg = project(tmp_path, SEQUENCE)
    store = Store.for_config(cfg)
    add_leads(store, 2)
    eng = Engine(cfg, store, enrol_every=timedelta(0))
    rng = random.Random(1)
    eng.run_pass(T0, rng)
    add_leads(store, 1, start=50)
    res = eng.run_pass(T0 + timedelta(minutes=5), rng)
    assert res.total("sent") == 2  # the newcomer's steps 1 and 2
    assert len({m.lead_id for m in messages(store)}) == 3


BLAST = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.sale]
kind = "blast"
status = "active"
start_at = 2026-03-03T09:00:00

[[campaigns.sale.steps]]
name = "only"
channel = "sms"
body = "Sale!"
"""


def test_blast_waits_for_start_at_enrols_once_and_completes(tmp_path: Path) -> None:
    cfg = project(tmp_path, BLAST, tz="Asia/Manila")
    store = Store.for_config(cfg)
    add_leads(store, 4)
    eng = Engine(cfg, store, enrol_every=timedelta(0))
    rng = random.Random(1)
    assert eng.run_pass(T0, rng).total("sent") == 0  # start_at is 09:00 Manila on the 3rd
    assert messages(store) == []
    start = T0 + days(1)  # 2026-03-03 01:00 UTC = 09:00 Manila
    assert eng.run_pass(start, rng).total("sent") == 4
    add_leads(store, 2, start=100)  # too late for this blast
    assert eng.run_pass(start + days(1), rng).total("sent") == 0
    assert len(messages(store)) == 4
    with store.read() as s:
        assert s.get(Meta, "campaign.sale.completed") is not None


PRIORITY = """
[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 5

[campaigns.low]
status = "active"
priority = 20
[[campaigns.low.steps]]
channel = "sms"
body = "low"

[campaigns.high]
status = "active"
priority = 1
[[campaigns.high.steps]]
channel = "sms"
body = "high"
"""


def test_priority_decides_who_goes_first_on_a_shared_limit(tmp_path: Path) -> None:
    cfg = project(tmp_path, PRIORITY)
    store = Store.for_config(cfg)
    add_leads(store, 4)
    eng = Engine(cfg, store)
    rng = random.Random(1)
    res = eng.run_pass(T0, rng)
    assert res.total("sent") == 5
    sent = [m.campaign for m in messages(store) if m.state == "sent"]
    assert sorted(sent) == ["high"] * 4 + ["low"]
    assert res.total("deferred_limit") == 3
    assert res.next_due == T0 + days(1)
    assert res.pace_until is None  # a daily limit: `send` exits instead of waiting


WINDOW = """
[channels.sms]
provider = "outbox"
kind = "sms"
window = "09:00-20:00"
days = "mon-fri"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
channel = "sms"
body = "hi"
"""


def test_window_is_read_in_each_leads_local_time(tmp_path: Path) -> None:
    cfg = project(tmp_path, WINDOW, tz="Asia/Manila")
    store = Store.for_config(cfg)
    ny = add_leads(store, 1)  # +1212: New York, from the phone number
    manila = add_leads(store, 1, start=10, timezone="Asia/Manila")
    eng = Engine(cfg, store)
    rng = random.Random(1)
    # Monday 2026-03-02 02:00 UTC: 10:00 in Manila, Sunday 21:00 in New York
    t = T0 + timedelta(hours=1)
    res = eng.run_pass(t, rng)
    assert res.total("sent") == 1
    by_lead = {m.lead_id: m for m in messages(store)}
    assert by_lead[manila[0]].state == "sent"
    assert by_lead[ny[0]].state == "pending"
    # Monday 09:00 in New York (EST) is 14:00 UTC
    assert by_lead[ny[0]].due_at == t.replace(hour=14)
    assert eng.run_pass(t.replace(hour=13, minute=59), rng).total("sent") == 0
    assert eng.run_pass(t.replace(hour=14), rng).total("sent") == 1


def test_opt_out_is_rechecked_at_claim_time(tmp_path: Path) -> None:
    cfg = project(tmp_path, SEQUENCE)
    store = Store.for_config(cfg)
    a, b, c = add_leads(store, 3)
    eng = Engine(cfg, store)
    eng.enrol(T0)  # pending rows exist for everyone
    with store.write() as s:
        s.add(OptOut(lead_id=a, channel="sms", source="keyword"))
        s.add(OptOut(lead_id=b, channel="*", source="manual"))
    res = eng.run_pass(T0, random.Random(1))
    sent_to = {m.lead_id for m in messages(store) if m.state == "sent"}
    assert sent_to == {c}
    skipped = {m.lead_id: m.reason for m in messages(store) if m.state == "skipped"}
    assert skipped == {a: "opted out of sms", b: "opted out of sms"}
    assert res.total("skipped") == 2
    with store.read() as s:
        states = {e.lead_id: e.state for e in s.exec(select(Enrolment))}
    assert states[a] == "stopped"  # stop_on includes optout by default


def test_stopped_enrolment_and_paused_or_archived_campaigns_send_nothing(tmp_path: Path) -> None:
    cfg = project(tmp_path, SEQUENCE)
    store = Store.for_config(cfg)
    a, b = add_leads(store, 2)
    Engine(cfg, store).enrol(T0)
    with store.write() as s:
        enrolment = s.exec(select(Enrolment).where(Enrolment.lead_id == a)).one()
        enrolment.state, enrolment.reason = "stopped", "reply"
    cfg.campaigns["welcome"].status = "paused"
    assert Engine(cfg, store).run_pass(T0, random.Random(1)).total("sent") == 0
    cfg.campaigns["welcome"].status = "active"
    Engine(cfg, store).run_pass(T0, random.Random(1))
    states = {m.lead_id: (m.state, m.reason) for m in messages(store) if m.step == "hello"}
    assert states[a] == ("skipped", "enrolment stopped: reply")
    assert states[b][0] == "sent"
    cfg.campaigns["welcome"].status = "archived"
    Engine(cfg, store).run_pass(T0 + days(3), random.Random(1))
    assert {m.reason for m in messages(store) if m.state == "skipped"} >= {"campaign archived"}


def test_render_error_fails_that_message_only(tmp_path: Path) -> None:
    body = SEQUENCE.replace('body = "Hi {{ lead.first_name }}"', 'body = "Hi {{ lead.nickname }}"')
    cfg = project(tmp_path, body)
    store = Store.for_config(cfg)
    add_leads(store, 1)
    add_leads(store, 1, start=5, attrs={"nickname": "Bee"})
    res = Engine(cfg, store).run_pass(T0, random.Random(1))
    hello = {m.lead_id: m for m in messages(store) if m.step == "hello"}
    failed = [m for m in hello.values() if m.state == "failed"]
    assert len(failed) == 1
    assert failed[0].error_code == "render"
    assert "nickname" in (failed[0].error or "")
    assert res.total("failed") == 1
    assert [f["body"] for f in outbox_files(tmp_path / "outbox")] == ["Hi Bee", "Hi again N5"]


ONE_STEP = """
[channels.sms]
provider = "outbox"
kind = "sms"
max_attempts = 3
retry_backoff = "1m"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
channel = "sms"
body = "hi"
"""


def test_transient_errors_back_off_then_fail_after_max_attempts(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP.replace('"1m"', '"1m"\ngive_up_after = "20m"'))
    store = Store.for_config(cfg)
    add_leads(store, 2)
    ch = ScriptedChannel(
        "sms",
        errors={"+12125550000": [transient(), transient()], "+12125550001": [transient()] * 5},
    )
    eng = Engine(cfg, store, channels={"sms": ch})
    rng = random.Random(3)
    res = eng.run_pass(T0, rng)
    assert res.total("retry") == 2
    first = {m.recipient: m for m in messages(store)}
    delay = first["+12125550000"].due_at - T0
    assert timedelta(minutes=1) <= delay <= timedelta(minutes=2)
    assert eng.run_pass(T0 + timedelta(seconds=30), rng).total("sent") == 0  # still backing off
    t = T0
    for _ in range(6):
        t += timedelta(minutes=10)
        eng.run_pass(t, rng)
    final = {m.recipient: m for m in messages(store)}
    assert final["+12125550000"].state == "sent"
    assert final["+12125550000"].attempts == 3
    assert final["+12125550001"].state == "failed"
    assert final["+12125550001"].attempts == 3
    assert final["+12125550001"].error_code == "429"
    assert len(ch.attempts) == 6


def test_permanent_and_opted_out_errors(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP)
    store = Store.for_config(cfg)
    bad, gone, ok = add_leads(store, 3)
    ch = ScriptedChannel(
        "sms",
        errors={
            "+12125550000": [ChannelError(ErrorKind.PERMANENT, "invalid number", code="21211")],
            "+12125550001": [ChannelError(ErrorKind.OPTED_OUT, "unsubscribed", code="21610")],
        },
    )
    res = Engine(cfg, store, channels={"sms": ch}).run_pass(T0, random.Random(1))
    by = {m.lead_id: m for m in messages(store)}
    assert (by[bad].state, by[bad].error_code, by[bad].error) == (
        "failed",
        "21211",
        "invalid number",
    )
    assert (by[gone].state, by[gone].error_code) == ("failed", "21610")
    assert by[ok].state == "sent"
    assert res.total("failed") == 2
    with store.read() as s:
        optouts = [(o.lead_id, o.channel, o.source) for o in s.exec(select(OptOut))]
    assert optouts == [(gone, "sms", "provider")]


def test_auth_error_stops_the_channel_and_keeps_the_message(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP)
    store = Store.for_config(cfg)
    add_leads(store, 3)
    refused = ChannelError(ErrorKind.AUTH, "token revoked", hint="run `campaignctl auth twilio`")
    ch = ScriptedChannel("sms", errors={"+12125550000": [refused]})
    res = Engine(cfg, store, channels={"sms": ch}).run_pass(T0, random.Random(1))
    assert res.auth_errors["sms"].hint == "run `campaignctl auth twilio`"
    assert len(ch.attempts) == 1  # nothing else tried on that channel
    assert {(m.state, m.attempts) for m in messages(store)} == {("pending", 0)}


def _strand(store: Store, worker: str) -> None:
    """Leave the first message `sending`, as a process killed mid-send would."""
    with store.write() as s:
        m = s.exec(select(Message).order_by(col(Message.id))).first()
        assert m is not None
        m.state, m.claimed_by, m.claimed_at, m.attempts = "sending", worker, T0, 1
        m.recipient = "+12125550000"


def test_sending_row_of_a_dead_process_is_reconciled_not_resent(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP)
    store = Store.for_config(cfg)
    add_leads(store, 2)
    eng = Engine(cfg, store)
    eng.enrol(T0)
    # the dead process had written its file: the provider "has it"
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "1.json").write_text('{"to": "+12125550000"}')
    _strand(store, f"{socket.gethostname()}:999999999:1")
    res = eng.run_pass(T0 + timedelta(minutes=1), random.Random(1))
    assert any(e["event"] == "reconciled" and e["outcome"] == "sent" for e in res.events)
    assert res.total("sent") == 1  # only the other lead; message 1 was not sent again
    assert {m.state for m in messages(store)} == {"sent"}
    assert (tmp_path / "outbox" / "1.json").read_text() == '{"to": "+12125550000"}'


def test_reconcile_not_sent_goes_again_and_unknown_stays_uncertain(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP)
    store = Store.for_config(cfg)
    add_leads(store, 1)
    ch = ScriptedChannel("sms", reconcile_answer=Reconciled.UNKNOWN)
    eng = Engine(cfg, store, channels={"sms": ch})
    eng.enrol(T0)
    _strand(store, f"{socket.gethostname()}:999999999:1")
    res = eng.run_pass(T0 + timedelta(minutes=1), random.Random(1))
    assert res.total("uncertain") == 1
    assert [m.state for m in messages(store)] == ["uncertain"]
    assert ch.attempts == []  # never a blind resend
    ch.reconcile_answer = Reconciled.NOT_SENT
    eng.run_pass(T0 + timedelta(minutes=2), random.Random(1))
    assert [m.state for m in messages(store)] == ["sent"]
    assert len(ch.sent) == 1


THREAD = """
[channels.email]
provider = "outbox"

[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Welcome, {{ lead.first_name }}"
body = "Hello"

[[campaigns.welcome.steps]]
name = "follow-up"
channel = "email"
delay = "2d"
thread = true
body = "Just checking"
"""


def test_thread_step_replies_to_the_first_email(tmp_path: Path) -> None:
    cfg = project(tmp_path, THREAD)
    store = Store.for_config(cfg)
    add_leads(store, 1)
    eng = Engine(cfg, store)
    eng.run_pass(T0, random.Random(1))
    first_id = messages(store)[0].message_id
    assert first_id is not None
    assert first_id.startswith("<")
    assert first_id.endswith("@sunrise.example>")
    eng.run_pass(T0 + days(2), random.Random(1))
    first = email.message_from_bytes((tmp_path / "outbox" / "1.eml").read_bytes())
    reply = email.message_from_bytes((tmp_path / "outbox" / "2.eml").read_bytes())
    assert first["Message-ID"] == first_id
    assert reply["In-Reply-To"] == first_id
    assert reply["Subject"] == "Re: Welcome, N0"
    assert reply["Message-ID"] == messages(store)[1].message_id


def test_daily_limit_across_passes(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP.replace("max_attempts = 3", "daily_limit = 4"))
    store = Store.for_config(cfg)
    add_leads(store, 10)
    eng = Engine(cfg, store)
    rng = random.Random(1)
    counts = [eng.run_pass(T0 + timedelta(hours=h), rng).total("sent") for h in range(0, 72, 6)]
    assert counts == [4, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0]
    times = sent_times(store)
    for t in times:
        assert sum(1 for u in times if t <= u < t + days(1)) <= 4


@pytest.mark.sqlite_only
def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    cfg = project(tmp_path, SEQUENCE)
    store = Store.for_config(cfg)
    add_leads(store, 3)
    db = tmp_path / "campaignctl.db"
    before = db.read_bytes()
    dry = dry_run(cfg, store, T0, limit=2)
    assert [m.to for m in dry.messages] == ["+12125550000", "+12125550001"]
    assert messages(store) == []
    assert not (tmp_path / "outbox").exists()
    assert db.read_bytes() == before


def test_claim_from_another_host_is_trusted_for_an_hour(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP)
    store = Store.for_config(cfg)
    add_leads(store, 1)
    ch = ScriptedChannel("sms", reconcile_answer=Reconciled.SENT)
    eng = Engine(cfg, store, channels={"sms": ch})
    eng.enrol(T0)
    _strand(store, "other-host:42:1")
    eng.run_pass(T0 + timedelta(minutes=30), random.Random(1))
    assert [m.state for m in messages(store)] == ["sending"]  # it may still be sending
    eng.run_pass(T0 + timedelta(hours=2), random.Random(1))
    assert [m.state for m in messages(store)] == ["sent"]
    assert ch.attempts == []


def test_dst_gap_in_the_leads_zone_sends_at_the_transition(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    cfg = project(tmp_path, WINDOW.replace("09:00-20:00", "02:30-05:00").replace("mon-fri", "*"))
    store = Store.for_config(cfg)
    add_leads(store, 1, timezone="America/New_York")
    eng = Engine(cfg, store)
    midnight = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST; 02:00-03:00 will not exist
    assert eng.run_pass(midnight, random.Random(1)).total("sent") == 0
    (m,) = messages(store)
    assert m.due_at == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT, the first open instant
    assert eng.run_pass(m.due_at, random.Random(1)).total("sent") == 1


def test_audience_matcher_agrees_with_the_expression_and_remembers() -> None:
    from campaignctl.audience import compile_audience, lead_context
    from campaignctl.engine import AudienceMatcher

    leads = [
        lead_context(
            email=f"{i}@x.com",
            phone=None,
            first_name=None,
            last_name=None,
            timezone=None,
            status=["new", "won"][i % 2],
            tags=[["buyer"], []][i % 3 % 2],
            attrs={"city": ["Makati", "Taguig"][i % 2], "budget": str(i * 1000)},
        )
        for i in range(30)
    ]
    for expr, fields in [
        ("status == 'new' and 'buyer' in tags", frozenset({"status", "tags"})),
        ("city == 'Makati'", frozenset({"city"})),
        # issue 15: `lead.NAME` reads one field, as a bare name does; `lead` as a whole, all
        ("lead.budget|int > 12000", frozenset({"budget"})),
        ("lead|length > 8", None),
        (None, frozenset()),
    ]:
        m = AudienceMatcher(expr, "audience")
        assert m.fields == fields
        plain = compile_audience(expr)
        assert [m(lead) for lead in leads] == [plain(lead) for lead in leads]
    m = AudienceMatcher("status == 'new' and 'buyer' in tags", "audience")
    for lead in leads:
        m(lead)
    assert len(m._seen) == 4  # four distinct (status, tags) pairs among 30 leads


def test_transient_error_that_may_have_sent_is_reconciled_before_a_retry(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP)
    store = Store.for_config(cfg)
    add_leads(store, 1)
    timeout = transient("timeout")
    setattr(timeout, "maybe_sent", True)  # noqa: B010 - set by the real channels (Gmail, SMTP, Twilio)
    ch = ScriptedChannel("sms", errors={"+12125550000": [timeout]})
    eng = Engine(cfg, store, channels={"sms": ch})
    res = eng.run_pass(T0, random.Random(1))
    assert res.total("uncertain") == 1
    (m,) = messages(store)
    assert (m.state, m.error_code) == ("uncertain", "timeout")
    # the provider says it never got it: back to pending, the backoff still holds
    ch.reconcile_answer = Reconciled.NOT_SENT
    eng.run_pass(T0 + timedelta(seconds=5), random.Random(1))
    (m,) = messages(store)
    assert m.state == "pending"
    assert m.due_at > T0 + timedelta(seconds=5)
    eng.run_pass(m.due_at, random.Random(1))
    assert [x.state for x in messages(store)] == ["sent"]
    assert len(ch.attempts) == 2


def test_transient_error_that_did_send_is_recorded_sent_without_a_retry(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP)
    store = Store.for_config(cfg)
    add_leads(store, 1)
    timeout = transient("timeout")
    setattr(timeout, "maybe_sent", True)  # noqa: B010
    ch = ScriptedChannel(
        "sms", errors={"+12125550000": [timeout]}, reconcile_answer=Reconciled.SENT
    )
    eng = Engine(cfg, store, channels={"sms": ch})
    eng.run_pass(T0, random.Random(1))
    eng.run_pass(T0 + timedelta(hours=1), random.Random(1))
    (m,) = messages(store)
    assert (m.state, m.provider_id) == ("sent", "SM1")
    assert len(ch.attempts) == 1


class Outage(ScriptedChannel):
    """Every send fails with a 503 while `down` is set."""

    down: bool = True

    def send(self, msg: Outgoing) -> Sent:
        if self.down:
            self.attempts.append(msg)
            raise ChannelError(ErrorKind.TRANSIENT, "503 Service Unavailable", code="503")
        return super().send(msg)


def test_a_long_outage_pauses_the_channel_and_fails_nothing_before_give_up_after(
    tmp_path: Path,
) -> None:
    cfg = project(tmp_path, ONE_STEP)  # max_attempts = 3, retry_backoff = 1m, give_up_after 3d
    store = Store.for_config(cfg)
    add_leads(store, 20)
    ch = Outage("sms")
    eng = Engine(cfg, store, channels={"sms": ch})
    rng = random.Random(4)
    t = T0
    for _ in range(12 * 6):  # six hours of 503s, a pass every 5 minutes (cron)
        res = eng.run_pass(t, rng)
        t += timedelta(minutes=5)
    assert {m.state for m in messages(store)} == {"pending"}
    # the breaker tripped after 5 failures: the rest of the batch kept its attempts, and
    # later only one probe per pause (1, 2, 4 ... 30 minutes) went
    assert len(ch.attempts) < 5 + 20
    assert max(m.attempts for m in messages(store)) <= 12
    assert "sms" in res.paused
    # another process on the same database sees the pause too
    other = Engine(cfg, store, channels={"sms": ch}, worker="other:1:1")
    assert other.run_pass(t, rng).total("retry") == 0
    ch.down = False
    for _ in range(24):  # the outage is over: the next probe closes the breaker
        eng.run_pass(t, rng)
        t += timedelta(minutes=5)
    assert {m.state for m in messages(store)} == {"sent"}
    assert sorted(m.to for m in ch.sent) == sorted({m.to for m in ch.sent})  # each once
    assert len(ch.sent) == 20


def test_a_transient_error_fails_a_message_only_after_give_up_after(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP.replace('"1m"', '"1m"\ngive_up_after = "2h"'))
    store = Store.for_config(cfg)
    add_leads(store, 1)
    ch = Outage("sms")
    eng = Engine(cfg, store, channels={"sms": ch})
    rng = random.Random(5)
    t = T0
    while t < T0 + timedelta(hours=2):
        eng.run_pass(t, rng)
        assert messages(store)[0].state == "pending", t
        t += timedelta(minutes=1)
    assert messages(store)[0].attempts > 3  # max_attempts alone no longer fails it
    for _ in range(70):
        eng.run_pass(t, rng)
        t += timedelta(minutes=1)
    m = messages(store)[0]
    assert (m.state, m.error_code) == ("failed", "503")
    assert "gave up after" in (m.reason or "")


def test_reconcile_work_is_bounded_so_every_pass_also_sends(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE_STEP)
    store = Store.for_config(cfg)
    add_leads(store, 60)
    ch = ScriptedChannel("sms", reconcile_answer=Reconciled.UNKNOWN)
    asked: list[int] = []
    answer = ch.reconcile

    def reconcile(msg: Outgoing) -> Reconciliation:
        asked.append(msg.id)
        return answer(msg)

    ch.reconcile = reconcile  # type: ignore[method-assign]
    eng = Engine(cfg, store, channels={"sms": ch})
    eng.enrol(T0)
    with store.write() as s:  # 50 lost outcomes the channel cannot settle
        for m in s.exec(select(Message).where(col(Message.id) <= 50)):
            m.state, m.claimed_at, m.attempts, m.recipient = "uncertain", T0, 1, "+1"
            s.add(m)
    res = eng.run_pass(T0 + timedelta(minutes=1), random.Random(1))
    assert len(asked) == 20  # at most RECONCILE_SINGLE a pass
    assert res.total("sent") == 10  # and the new messages went in the same pass
    assert res.total("uncertain") == 50
    eng.run_pass(T0 + timedelta(minutes=1, seconds=10), random.Random(1))
    assert len(asked) == 40  # the next ones, not the same twenty again
