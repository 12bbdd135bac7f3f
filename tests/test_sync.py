"""`campaignctl sync` through the real CLI against the loopback Twilio and Gmail fakes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import pytest
from sqlmodel import col, select

from campaignctl.classify import HELP_WORDS, OPTIN_WORDS, OPTOUT_WORDS
from campaignctl.config import load
from campaignctl.store import Enrolment, Event, Message, OptOut, Store
from tests.support import add_leads, write_project

OUR_SMS = "+15005550006"
OUR_WA = "whatsapp:+14155238886"

SMS_CAMPAIGN = """
[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name }}, reply STOP to opt out."

[[campaigns.welcome.steps]]
name = "nudge"
channel = "sms"
delay = "1d"
body = "Still there, {{ lead.first_name }}?"
"""


def _store(folder) -> Store:
    return Store.for_config(load(folder / "campaigns.toml"))


def _events(store: Store) -> list[Event]:
    with store.read() as s:
        return list(s.exec(select(Event).order_by(col(Event.id))))


def messages_where(store: Store, **where: str) -> list[Message]:
    """Messages in id order (the leads' order), filtered by column values."""
    with store.read() as s:
        q = select(Message).order_by(col(Message.id))
        for k, v in where.items():
            q = q.where(getattr(Message, k) == v)
        return list(s.exec(q))


@pytest.fixture
def sms_world(tmp_path, fake_twilio, cli):
    """14 leads who each got the hello SMS through the fake Twilio."""
    write_project(
        tmp_path,
        f"""\
[channels.sms]
provider = "twilio"
from = "{OUR_SMS}"
api_base = "{fake_twilio.url}"

[channels.whatsapp]
provider = "twilio"
from = "{OUR_WA}"
api_base = "{fake_twilio.url}"
""",
        SMS_CAMPAIGN,
    )
    store = _store(tmp_path)
    add_leads(store, 14)
    r = cli("-C", tmp_path, "send", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert len(fake_twilio.created) == 14
    return tmp_path, store, fake_twilio


def _phone(i: int) -> str:
    return f"+1212555{i:04d}"


def test_every_keyword_path(sms_world, cli):
    folder, store, fake = sms_world
    # the carrier keywords, one lead each (the world has 14); the Spanish and French words take
    # the same path and are covered by test_inbound's keyword tests
    carrier = OPTOUT_WORDS - {"ALTO", "BAJA", "ARRET", "ARRÊT"}
    words = sorted(carrier) + sorted(OPTIN_WORDS) + sorted(HELP_WORDS)
    assert len(words) == 13
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    for i, word in enumerate(words):
        # surrounding spaces, punctuation and case are ignored
        fake.receive(_phone(i), OUR_SMS, f"  {word.lower()}! ", when=t0)
    fake.receive(_phone(13), OUR_SMS, "Stop by the office tomorrow?", when=t0)

    r = cli("-C", folder, "sync", "--channel", "sms", "--format", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)["channels"][0]
    assert doc["events"] == {"optout": 8, "optin": 3, "help": 2, "reply": 1}
    assert doc["unknown_leads"] == 0

    with store.read() as s:
        opted = {o.lead_id: (o.channel, o.source) for o in s.exec(select(OptOut))}
        stopped = {e.lead_id: e.reason for e in s.exec(select(Enrolment)) if e.state == "stopped"}
    ids = [m.lead_id for m in messages_where(store, step="hello")]
    assert opted == {ids[i]: ("sms", "keyword") for i in range(8)}
    # opt-outs and the reply end the sequence (default stop_on); optin and help do not
    assert stopped == {**{ids[i]: "optout" for i in range(8)}, ids[13]: "reply"}
    nudges = {m.lead_id: m for m in messages_where(store, step="nudge")}
    for i in range(8):
        assert nudges.get(ids[i]) is None or nudges[ids[i]].state == "skipped"
    assert sum(1 for m in nudges.values() if m.state == "pending") == 5  # optin, help: go on


def test_start_after_stop_opts_back_in_and_whatsapp(sms_world, cli):
    folder, store, fake = sms_world
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    fake.receive(_phone(0), OUR_SMS, "STOP", when=t0)
    fake.receive(_phone(0), OUR_SMS, "START", when=t0 + timedelta(minutes=1))
    fake.receive(f"whatsapp:{_phone(1)}", OUR_WA, "stop", when=t0)
    r = cli("-C", folder, "sync")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[-1] == (
        "sync: sms 2 new (optin 1, optout 1); whatsapp 1 new (optout 1)"
    )
    with store.read() as s:
        opted = [(o.lead_id, o.channel) for o in s.exec(select(OptOut))]
    ids = [m.lead_id for m in messages_where(store, step="hello")]
    assert opted == [(ids[1], "whatsapp")]


def test_delivery_statuses_and_the_cursor(sms_world, cli):
    folder, store, fake = sms_world
    hello = messages_where(store, step="hello")
    fake.set_status(hello[0].provider_id, "delivered")
    fake.set_status(hello[1].provider_id, "undelivered", 30005)
    fake.set_status(hello[2].provider_id, "failed", 21610)  # opted out at the provider
    r = cli("-C", folder, "sync", "--channel", "sms", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["channels"][0]["events"] == {
        "delivered": 1,
        "undelivered": 1,
        "failed": 1,
    }
    after = {m.id: m for m in messages_where(store, step="hello")}
    assert after[hello[0].id].error_code is None
    assert after[hello[1].id].error_code == "30005"
    assert after[hello[1].id].state == "sent"  # the provider took it: the ledger stays
    with store.read() as s:
        assert [o.lead_id for o in s.exec(select(OptOut))] == [hello[2].lead_id]
    before = _events(store)

    fake.receive(_phone(5), OUR_SMS, "Who is this?")
    r = cli("-C", folder, "sync", "--channel", "sms", "--format", "json")
    doc = json.loads(r.stdout)["channels"][0]
    assert doc["events"] == {"reply": 1}  # the statuses are listed again, recorded once
    assert doc["duplicates"] >= 3
    r = cli("-C", folder, "sync", "--channel", "sms")
    assert r.stdout.splitlines()[-1] == "sync: sms 0 new"
    events = _events(store)
    assert len(events) == len(before) + 1
    assert len({e.source_id for e in events}) == len(events)


def test_unreachable_exits_75_refused_credentials_78(sms_world, cli, monkeypatch):
    folder, _, fake = sms_world
    fake.fail_next(503, method="GET", path="/Messages")
    r = cli("-C", folder, "sync", "--channel", "sms")
    assert r.exit_code == 75, r.stderr
    assert "twilio channel 'sms'" in r.stderr
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong")
    r = cli("-C", folder, "sync", "--channel", "sms")
    assert r.exit_code == 78
    assert "campaignctl auth twilio" in r.stderr
    assert "wrong" not in r.stderr


def test_unknown_channel(sms_world, cli):
    folder, _s, _f = sms_world
    r = cli("-C", folder, "sync", "--channel", "smss")
    assert r.exit_code == 2
    assert "no channel named 'smss'" in r.stderr


def test_outbox_and_smtp_say_they_cannot_read(project, cli):
    toml = project / "campaigns.toml"
    toml.write_text(
        toml.read_text() + '\n[channels.relay]\nprovider = "smtp"\nhost = "127.0.0.1"\n'
    )
    r = cli("-C", project, "sync")
    assert r.exit_code == 0
    assert "email (outbox): the outbox writes files; nothing comes back" in r.stdout
    assert "relay (smtp): SMTP cannot read replies (IMAP is not supported yet)" in r.stdout
    r = cli("-C", project, "sync")
    assert r.stdout.splitlines()[-1] == (
        "sync: email cannot read replies; sms cannot read replies; relay cannot read replies"
    )
    r = cli("-C", project, "status")
    assert "relay (smtp): SMTP cannot read replies" in r.stdout
    r = cli("-C", project, "status", "--format", "json")
    chans = {c["name"]: c for c in json.loads(r.stdout)["channels"]}
    assert chans["relay"]["reads_replies"] is False
    assert "leads optout" in chans["relay"]["note"]


# ---------------------------------------------------------------- Gmail

EMAIL_CAMPAIGN = """
[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Welcome, {{ lead.first_name }}!"
body = "Hi {{ lead.first_name }}!"

[[campaigns.welcome.steps]]
name = "followup"
channel = "email"
delay = "1d"
thread = true
body = "Any questions, {{ lead.first_name }}?"
"""


def _mail(frm: str, subject: str, body: str, **headers: str | None) -> EmailMessage:
    m = EmailMessage()
    m["From"] = frm
    m["To"] = "ana@sunrise.example"
    m["Subject"] = subject
    # Date has whole seconds: a reply dated in the second of our send would look older
    m["Date"] = format_datetime(datetime.now(UTC) + timedelta(seconds=2))
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m


@pytest.fixture
def mail_world(gmail_project, fake_gmail, cli):
    (gmail_project / "campaigns.toml").write_text(
        (gmail_project / "campaigns.toml").read_text() + EMAIL_CAMPAIGN
    )
    store = _store(gmail_project)
    add_leads(store, 4)
    r = cli("-C", gmail_project, "send", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert len(fake_gmail.sent) == 4
    return gmail_project, store, fake_gmail


def test_gmail_reply_bounce_unsubscribe_and_cursor(mail_world, cli):
    folder, store, fake = mail_world
    hello = messages_where(store, step="hello")
    fake.deliver(
        _mail(
            "N0 <l0@ex.com>",
            "Re: Welcome, N0!",
            "Sounds good, call me.",
            In_Reply_To=hello[0].message_id,
            References=hello[0].message_id,
        )
    )
    fake.deliver(
        _mail(
            "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
            "Delivery Status Notification (Failure)",
            f"Your message to l1@ex.com was not delivered.\n\nMessage-ID: {hello[1].message_id}",
            X_Failed_Recipients="l1@ex.com",
        )
    )
    fake.deliver(_mail("l2@ex.com", "unsubscribe", "please remove me"))
    r = cli("-C", folder, "sync", "--format", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)["channels"][0]
    assert doc["events"] == {"reply": 1, "bounce": 1, "optout": 1}
    events = {e.kind: e for e in _events(store)}
    assert events["reply"].source_id is not None
    # the Gmail id is the source: the same message is one event however it is found
    assert events["reply"].source_id.startswith("reply:")
    assert "@" not in events["reply"].source_id
    assert events["bounce"].message_id == hello[1].id
    with store.read() as s:
        opted = {o.lead_id: o.source for o in s.exec(select(OptOut))}
    assert opted == {hello[1].lead_id: "bounce", hello[2].lead_id: "unsubscribe"}

    # the second sync reads the history from the stored history id: nothing twice
    requests = len(fake.api_requests)
    r = cli("-C", folder, "sync")
    assert r.stdout.splitlines()[-1] == "sync: email 0 new"
    assert any(q.path.endswith("/history") for q in fake.api_requests[requests:])

    # a history id Gmail no longer serves (404): a dated search instead, still nothing twice
    fake.oldest_history_id = fake.history_id + 100
    fake.deliver(
        _mail(
            "l3@ex.com",
            "Re: Welcome, N3!",
            "Thanks!",
            In_Reply_To=hello[3].message_id,
        )
    )
    r = cli("-C", folder, "sync", "--format", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)["channels"][0]
    assert doc["events"] == {"reply": 1}
    assert doc["duplicates"] == 3
    kinds = Counter(e.kind for e in _events(store))
    assert kinds == {"reply": 2, "bounce": 1, "optout": 1}
    followups = {m.lead_id: m.state for m in messages_where(store, step="followup")}
    assert all(followups.get(m.lead_id) in (None, "skipped") for m in hello)


def test_gmail_refused_credentials_exit_78_with_the_auth_hint(mail_world, cli):
    folder, store, fake = mail_world
    fake.token_error = "invalid_grant"
    fake.valid_tokens.clear()  # the stored token no longer works: a refresh is refused
    r = cli("-C", folder, "sync")
    assert r.exit_code == 78, r.stderr
    assert "campaignctl auth gmail --channel email" in r.stderr
    with store.read() as s:
        assert s.exec(select(Event)).first() is None


def test_quiet_sync_prints_nothing_when_all_went_well(sms_world, cli):
    """cron runs `sync --quiet` every 5 minutes and mails whatever it prints."""
    folder, store, fake = sms_world
    fake.receive(_phone(0), OUR_SMS, "STOP")
    r = cli("-C", folder, "sync", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert (r.stdout, r.stderr) == ("", "")
    with store.read() as s:
        assert len(list(s.exec(select(OptOut)))) == 1  # it did its work all the same


def test_quiet_sync_reports_a_failed_channel_on_stderr(sms_world, cli):
    folder, _, fake = sms_world
    fake.fail_next(503, method="GET", path="/Messages")
    r = cli("-C", folder, "sync", "--channel", "sms", "--quiet")
    assert r.exit_code == 75
    assert r.stdout == ""
    assert r.stderr.splitlines()[0] == "sync: sms error (transient)"
    assert "campaignctl: error: twilio channel 'sms'" in r.stderr


def _list_requests(fake) -> int:
    return sum(
        1 for r in fake.http.requests if r.method == "GET" and r.path.endswith("/Messages.json")
    )


def test_sync_reads_a_bounded_number_of_pages_and_the_next_goes_on(sms_world, cli, monkeypatch):
    """issue 9 #22: `sync` followed next_page_uri without bound."""
    import campaignctl.channels.twilio as twilio

    monkeypatch.setattr(twilio, "SYNC_PAGE_SIZE", 4, raising=False)
    monkeypatch.setattr(twilio, "SYNC_MAX_PAGES", 3, raising=False)
    folder, store, fake = sms_world
    for m in messages_where(store, step="hello"):
        fake.set_status(m.provider_id, "delivered")
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    for i in range(13):
        fake.receive(_phone(i), OUR_SMS, f"Who is this? ({i})", when=t0)
    # 13 replies to our number (4 pages of 4) and 14 of our sends (4 pages): 8 pages in all

    def sync() -> dict[str, Any]:
        before = _list_requests(fake)
        r = cli("-C", folder, "sync", "--channel", "sms", "--format", "json")
        assert r.exit_code == 0, r.stderr
        doc: dict[str, Any] = json.loads(r.stdout)["channels"][0]
        doc["pages"] = _list_requests(fake) - before
        return doc

    first = sync()
    assert (first["pages"], first["events"], first["more"]) == (3, {"reply": 12}, True)
    fake.receive(_phone(13), OUR_SMS, "Late reply", when=datetime.now(UTC))  # mid-round
    second = sync()
    assert (second["pages"], second["more"]) == (3, True)
    assert second["events"] == {"reply": 1, "delivered": 8}
    r = cli("-C", folder, "sync", "--channel", "sms")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "sync: sms 6 new (delivered 6)"  # the round is done
    # a new round, from the time the first one started: the late reply is on its first page;
    # the rest is read again (the overlap, two days of our sends) and recorded once
    rounds = [sync()]
    assert rounds[0]["events"] == {"reply": 1}
    while rounds[-1]["more"] and len(rounds) < 5:
        rounds.append(sync())
    assert [d["events"] for d in rounds] == [{"reply": 1}, {}, {}]
    assert all(d["pages"] <= 3 for d in rounds)

    events = _events(store)
    assert Counter(e.kind for e in events) == {"reply": 14, "delivered": 14}
    assert len({e.source_id for e in events}) == len(events)  # nothing recorded twice


def test_sync_summary_says_when_more_remains(sms_world, cli, monkeypatch):
    import campaignctl.channels.twilio as twilio

    monkeypatch.setattr(twilio, "SYNC_PAGE_SIZE", 5, raising=False)
    monkeypatch.setattr(twilio, "SYNC_MAX_PAGES", 1, raising=False)
    folder = sms_world[0]
    r = cli("-C", folder, "sync", "--channel", "sms")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "sync: sms 0 new, more to read: the next sync goes on"


def _gmail_list_requests(fake) -> int:
    """`history.list` and `messages.list` requests (the pages `sync` reads)."""
    return sum(
        1
        for r in fake.api_requests
        if r.method == "GET" and (r.path.endswith("/history") or r.path.endswith("/messages"))
    )


def test_gmail_sync_reads_a_bounded_number_of_pages_and_the_next_goes_on(
    gmail_project, fake_gmail, cli, monkeypatch
):
    """issue 9 #22 for Gmail: `sync` followed nextPageToken without bound, in the dated search
    (a first sync) and in `history.list` (every later one)."""
    import campaignctl.channels.gmail as gmail

    monkeypatch.setattr(gmail, "SYNC_PAGE_SIZE", 5, raising=False)
    monkeypatch.setattr(gmail, "SYNC_MAX_PAGES", 2, raising=False)
    folder, fake = gmail_project, fake_gmail
    (folder / "campaigns.toml").write_text((folder / "campaigns.toml").read_text() + EMAIL_CAMPAIGN)
    store = _store(folder)
    add_leads(store, 24)
    r = cli("-C", folder, "send", "--quiet")
    assert r.exit_code == 0, r.stderr
    hello = messages_where(store, step="hello")
    assert len(fake.sent) == len(hello) == 24

    def reply(i: int, minutes: int = 0) -> None:
        mail = _mail(
            f"N{i} <l{i}@ex.com>",
            f"Re: Welcome, N{i}!",
            "Tell me more.",
            In_Reply_To=hello[i].message_id,
        )
        if minutes:  # dated after the others: first in the search's newest-first order
            del mail["Date"]
            mail["Date"] = format_datetime(datetime.now(UTC) + timedelta(minutes=minutes))
        fake.deliver(mail)

    def sync() -> dict[str, Any]:
        before = _gmail_list_requests(fake)
        r = cli("-C", folder, "sync", "--format", "json")
        assert r.exit_code == 0, r.stderr
        doc: dict[str, Any] = json.loads(r.stdout)["channels"][0]
        doc["pages"] = _gmail_list_requests(fake) - before
        return doc

    def cursor() -> dict[str, Any]:
        from campaignctl.inbound import get_cursor

        with store.read() as s:
            return dict(json.loads(get_cursor(s, "email") or "{}"))

    # a first sync searches by date: 24 sends and 10 replies are 7 pages of 5
    for i in range(10):
        reply(i)
    first = sync()
    assert (first["pages"], first["more"]) == (2, True)
    assert cursor()["round"]["kind"] == "search"
    assert cursor()["round"]["page"]  # the search's next page, and its query
    assert cursor()["round"]["query"].startswith("after:")
    reply(10, minutes=5)  # mid-round: after the search began, on the page already read
    runs = [first]
    while runs[-1]["more"] and len(runs) < 10:
        runs.append(sync())
    assert [d["pages"] for d in runs] == [2, 2, 2, 1]  # 7 pages, one more for the late reply
    assert "round" not in cursor()
    # the next round is history from where the search began: the late reply is there
    late = sync()
    assert (late["pages"], late["events"], late["more"]) == (1, {"reply": 1}, False)

    # history.list pages too: 12 replies are 3 pages of 5
    start = cursor()["history_id"]
    for i in range(11, 23):
        reply(i)
    first = sync()
    assert (first["pages"], first["events"], first["more"]) == (2, {"reply": 10}, True)
    assert cursor()["round"]["kind"] == "history"
    assert cursor()["round"]["page"]  # the page token, with the round's start history id
    assert (cursor()["round"]["start"], cursor()["history_id"]) == (start, start)
    reply(23)  # mid-round
    second = sync()
    assert (second["pages"], second["events"], second["more"]) == (1, {"reply": 3}, False)
    again = sync()  # the round ended where it began: the mid-round reply is read again, once
    assert (again["events"], again["duplicates"], again["more"]) == ({}, 1, False)

    events = _events(store)
    assert Counter(e.kind for e in events) == {"reply": 24}
    assert len({e.source_id for e in events}) == len(events)  # nothing recorded twice
    assert {e.message_id for e in events} == {m.id for m in hello}  # and nothing missed
