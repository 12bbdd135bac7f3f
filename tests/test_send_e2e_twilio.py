"""`campaignctl send` end to end through Twilio SMS and WhatsApp, against the loopback fake."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from campaignctl.store import Message
from tests.fakes.twilio import AUTH_TOKEN, FakeTwilio
from tests.support import (
    JUAN_PHONE,
    MARIA_PHONE,
    SMS_FROM,
    TEMPLATE_SID,
    WA_FROM,
    Cli,
    add_leads,
    enrolments,
    optouts,
    row,
    rows,
    status_steps,
    travel,
    twilio_folder,
    utc,
)


@pytest.fixture
def folder(twilio_project: Path) -> Path:
    return twilio_folder(twilio_project)


def _to(fake: FakeTwilio) -> list[str]:
    return [form["To"] for form in fake.created]


def test_sms_steps_then_a_whatsapp_template(cli: Cli, folder: Path, fake_twilio: FakeTwilio):
    juan, maria = add_leads(folder, JUAN_PHONE, MARIA_PHONE)
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert "summary: sent 2, failed 0" in res.stdout
    assert fake_twilio.created == [
        {
            "To": lead["phone"],
            "From": SMS_FROM,
            "Body": f"Hi {lead['first_name']}, Ana from Sunrise here. Reply STOP to opt out.",
            "StatusCallback": "https://sunrise.example/twilio/status",
        }
        for lead in (JUAN_PHONE, MARIA_PHONE)
    ]
    for lead_id, msg in zip((juan, maria), fake_twilio.messages, strict=True):
        rec = row(folder, "hello", lead_id)
        assert (rec.state, rec.provider_id, rec.recipient) == ("sent", msg["sid"], msg["to"])
        assert rec.message_id is None  # Message-IDs are for email

    travel(folder, timedelta(days=1))
    assert cli("-C", folder, "send").exit_code == 0
    assert [f["Body"] for f in fake_twilio.created[2:]] == [
        "Still looking for a home, Juan?",
        "Still looking for a home, Maria?",
    ]

    travel(folder, timedelta(days=1))
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    cards = fake_twilio.created[4:]
    assert [(f["To"], f["From"], f["ContentSid"]) for f in cards] == [
        ("whatsapp:+639171234567", WA_FROM, TEMPLATE_SID),
        ("whatsapp:+639171234568", WA_FROM, TEMPLATE_SID),
    ]
    assert [json.loads(f["ContentVariables"]) for f in cards] == [
        {"1": "Juan", "2": "Makati"},
        {"1": "Maria", "2": "Makati"},
    ]
    assert all("Body" not in f and "StatusCallback" not in f for f in cards)
    card = row(folder, "card", juan)
    assert (card.state, card.recipient) == ("sent", "+639171234567")
    assert card.provider_id == fake_twilio.messages[4]["sid"]
    steps = status_steps(cli, folder)
    assert [steps[s]["sent"] for s in ("hello", "nudge", "card")] == [2, 2, 2]
    assert {e[0] for e in enrolments(folder).values()} == {"completed"}


def test_invalid_number_21211_fails_while_others_go(
    cli: Cli, folder: Path, fake_twilio: FakeTwilio
) -> None:
    bad, maria = add_leads(folder, {"phone": "+12", "first_name": "Juan"}, MARIA_PHONE)
    res = cli("-C", folder, "send")
    assert res.exit_code == 1
    assert "summary: sent 1, failed 1" in res.stdout
    assert "Invalid 'To' Phone Number" in res.stderr
    failed = row(folder, "hello", bad)
    assert (failed.state, failed.error_code) == ("failed", "21211")
    assert enrolments(folder)[bad] == ("stopped", "step hello failed")
    assert row(folder, "hello", maria).state == "sent"
    assert _to(fake_twilio) == [MARIA_PHONE["phone"]]


@pytest.mark.parametrize("stop_on", ["", "stop_on = []"])
def test_21610_fails_and_opts_the_lead_out_of_sms(
    cli: Cli, twilio_project: Path, fake_twilio: FakeTwilio, stop_on: str
) -> None:
    folder = twilio_folder(twilio_project, stop_on)
    juan, maria = add_leads(folder, JUAN_PHONE, MARIA_PHONE)
    fake_twilio.fail_next(400, 21610)  # Juan texted STOP to our SMS number
    res = cli("-C", folder, "send")
    assert res.exit_code == 1
    failed = row(folder, "hello", juan)
    assert (failed.state, failed.error_code) == ("failed", "21610")
    assert optouts(folder) == [(juan, "sms", "provider")]
    assert status_steps(cli, folder)["hello"]["opted_out"] == 1

    for _ in range(2):
        travel(folder, timedelta(days=1))
        cli("-C", folder, "send")
    # Juan's later SMS is never even attempted; Maria gets everything
    creates = [r.form()["To"][0] for r in fake_twilio.http.requests if r.method == "POST"]
    assert creates.count(JUAN_PHONE["phone"]) == 1
    assert _to(fake_twilio).count(MARIA_PHONE["phone"]) == 2
    assert row(folder, "card", maria).state == "sent"
    juans = {m.step: m.state for m in rows(folder) if m.lead_id == juan}
    if stop_on:  # the enrolment goes on: skipped on SMS, still sent on WhatsApp
        assert juans == {"hello": "failed", "nudge": "skipped", "card": "sent"}
        assert row(folder, "nudge", juan).reason == "opted out of sms"
        assert "whatsapp:+639171234567" in _to(fake_twilio)
    else:  # stop_on has optout (the default): the enrolment stops there
        assert juans == {"hello": "failed"}
        assert enrolments(folder)[juan] == ("stopped", "optout")


def test_20429_is_retried_with_backoff(cli: Cli, folder: Path, fake_twilio: FakeTwilio) -> None:
    (juan,) = add_leads(folder, JUAN_PHONE)
    fake_twilio.fail_next(429, 20429)
    res = cli("-C", folder, "send")
    assert res.exit_code == 75  # nothing went and the provider said "later"
    held = row(folder, "hello", juan)
    assert (held.state, held.attempts, held.error_code) == ("pending", 1, "20429")
    wait = utc(held.due_at) - utc(held.claimed_at)
    assert timedelta(minutes=1) <= wait <= timedelta(minutes=2)  # retry_backoff + jitter
    assert fake_twilio.created == []

    travel(folder, wait)
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert _to(fake_twilio) == [JUAN_PHONE["phone"]]
    done = row(folder, "hello", juan)
    assert (done.state, done.attempts) == ("sent", 2)
    assert done.provider_id == fake_twilio.messages[0]["sid"]


def test_63016_fails_with_the_content_sid_hint(cli: Cli, twilio_project: Path, fake_twilio):
    with (twilio_project / "campaigns.toml").open("a") as f:
        f.write(
            '\n[campaigns.chat]\nstatus = "active"\n[[campaigns.chat.steps]]\nname = "hi"\n'
            'channel = "whatsapp"\nbody = "Hi {{ lead.first_name }}!"\n'
        )
    (juan,) = add_leads(twilio_project, JUAN_PHONE)
    res = cli("-C", twilio_project, "send")
    assert res.exit_code == 1
    failed = row(twilio_project, "hi", juan)
    assert (failed.state, failed.error_code) == ("failed", "63016")
    hint = "outside the 24 h window: use a template (content_sid)"
    assert f"hint: {hint}" in res.stderr
    assert failed.reason == hint
    assert fake_twilio.created == []


def test_bad_credentials_exit_78_and_leave_messages_pending(
    cli: Cli, folder: Path, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    juan, maria = add_leads(folder, JUAN_PHONE, MARIA_PHONE)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong-token-value")
    res = cli("-C", folder, "send")
    assert res.exit_code == 78
    assert "campaignctl auth twilio" in res.stderr
    for secret in ("wrong-token-value", AUTH_TOKEN):
        assert secret not in res.stdout + res.stderr
    for lead_id in (juan, maria):
        m = row(folder, "hello", lead_id)
        assert (m.state, m.attempts, m.claimed_by) == ("pending", 0, None)
    assert fake_twilio.created == []

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    assert cli("-C", folder, "send").exit_code == 0
    assert _to(fake_twilio) == [JUAN_PHONE["phone"], MARIA_PHONE["phone"]]


def _shift_breaker(folder: Path, by: timedelta) -> None:
    """Let `by` pass for the channels' circuit breakers (their pause ends that much earlier)."""
    from dataclasses import replace

    from campaignctl.breaker import Breaker
    from campaignctl.store import Meta
    from tests.support import open_store

    store = open_store(folder)
    try:
        with store.write() as s:
            for m in s.exec(select(Meta).where(col(Meta.key).like("breaker.%"))):
                b = Breaker.from_json(m.value)
                recent = tuple(replace(a, at=a.at - by) for a in b.recent)
                until = b.until - by if b.until else None
                m.value = replace(b, recent=recent, until=until).to_json()
                s.add(m)
    finally:
        store.close()


def test_a_503_outage_pauses_sms_fails_nothing_and_sends_each_once_after(
    cli: Cli, folder: Path, fake_twilio: FakeTwilio
) -> None:
    phones = [{"phone": f"+6391712345{i:02d}", "first_name": f"N{i}"} for i in range(8)]
    ids = add_leads(folder, *phones)
    fake_twilio.fail_next(503, times=10**6)  # every Messages POST, until cleared
    res = cli("-C", folder, "send")
    assert res.exit_code == 75
    assert "sms: paused by circuit breaker until" in res.stderr
    # five attempts tripped the breaker; the rest of the batch was not tried
    assert sorted(row(folder, "hello", i).attempts for i in ids) == [0, 0, 0, 1, 1, 1, 1, 1]
    status = cli("-C", folder, "status")
    assert "sms: paused by circuit breaker until " in status.stdout
    assert "5 of last 5 attempts failed: twilio channel 'sms': 503: Unable to create record: " in (
        status.stdout
    )
    doc = json.loads(cli("-C", folder, "status", "--format", "json").stdout)
    sms = next(c for c in doc["channels"] if c["name"] == "sms")
    assert (sms["breaker"]["paused"], sms["breaker"]["failed"]) == (True, 5)
    for _ in range(10):  # hours of outage: one probe per pause, nothing fails
        travel(folder, timedelta(hours=2))
        _shift_breaker(folder, timedelta(hours=2))
        assert cli("-C", folder, "send").exit_code == 75
        assert {row(folder, "hello", i).state for i in ids} <= {"pending", "uncertain"}
    assert sum(row(folder, "hello", i).attempts for i in ids) == 5 + 10  # one probe a run
    fake_twilio._failures.clear()  # the provider is back
    for _ in range(3):
        travel(folder, timedelta(hours=2))
        _shift_breaker(folder, timedelta(hours=2))
        res = cli("-C", folder, "send")
        assert res.exit_code == 0, res.stderr
    assert {row(folder, "hello", i).state for i in ids} == {"sent"}
    hellos = [f["To"] for f in fake_twilio.created if f.get("Body", "").startswith("Hi ")]
    assert sorted(hellos) == sorted(p["phone"] for p in phones)  # each exactly once


def test_a_send_while_the_breaker_pauses_the_channel_exits_75_deferred_by_breaker(
    cli: Cli, folder: Path, fake_twilio: FakeTwilio
) -> None:
    """Review of issue 9 #8 and #9: a paused channel is a provider that is down, not a limit:
    exit 75 and "by breaker"; `--quiet` says nothing about a pause it did not see start."""
    phones = [{"phone": f"+6391712347{i:02d}", "first_name": f"N{i}"} for i in range(8)]
    add_leads(folder, *phones)
    fake_twilio.fail_next(503, times=10**6)
    first = cli("-C", folder, "send", "--quiet")
    assert first.exit_code == 75
    assert "sms: paused by circuit breaker until" in first.stderr  # it tripped in this run
    res = cli("-C", folder, "send")  # still paused: nothing is tried
    assert res.exit_code == 75, res.output
    summary = next(x for x in res.stdout.splitlines() if x.startswith("summary: "))
    # five attempts tripped it and wait for their retry; the three untried ones are due now
    assert "deferred 0 by limit, 0 by window, 3 by breaker" in summary
    assert "sms: paused by circuit breaker until" in res.stderr
    quiet = cli("-C", folder, "send", "--quiet")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (75, "", "")
    status = cli("-C", folder, "status")
    assert "3 due message(s) deferred by breaker" in status.stdout
    doc = json.loads(cli("-C", folder, "status", "--format", "json").stdout)
    sms = next(c for c in doc["channels"] if c["name"] == "sms")
    assert sms["breaker"]["deferred"] == 3


def test_many_uncertain_sms_are_reconciled_with_one_list_and_new_ones_still_go(
    cli: Cli, folder: Path, fake_twilio: FakeTwilio
) -> None:
    from tests.support import open_store

    phones = [{"phone": f"+6391712346{i:02d}", "first_name": f"N{i}"} for i in range(30)]
    ids = add_leads(folder, *phones[:25])
    assert cli("-C", folder, "send").exit_code == 0
    store = open_store(folder)  # the outcomes were lost, as after a kill mid-batch
    try:
        with store.write() as s:
            for m in s.exec(select(Message).where(Message.step == "hello")):
                m.state, m.provider_id, m.sent_at = "uncertain", None, None
                s.add(m)
    finally:
        store.close()
    new = add_leads(folder, *phones[25:])
    fake_twilio.http.requests.clear()
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    lists = [r for r in fake_twilio.http.requests if r.method == "GET"]
    assert len(lists) == 1  # not one (or two) per uncertain message
    sids = {m["to"]: m["sid"] for m in fake_twilio.messages}
    for lead_id, p in zip(ids, phones, strict=False):
        rec = row(folder, "hello", lead_id)
        assert (rec.state, rec.provider_id) == ("sent", sids[p["phone"]])
    assert {row(folder, "hello", i).state for i in new} == {"sent"}  # new sends in the same run
    hellos = [f["To"] for f in fake_twilio.created if f.get("Body", "").startswith("Hi ")]
    assert len(hellos) == len(set(hellos)) == 30  # nothing sent twice
