"""`campaignctl leads optout`: the effects of an inbound opt-out, by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from campaignctl.store import Enrolment, Event, Lead, Message, OptOut, Store

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def seeded(project):
    """The minimal project with Ana enrolled in `welcome`: hello sent, nudge (sms) pending."""
    store = Store(f"sqlite:///{project / 'campaignctl.db'}")
    with store.write() as s:
        ana = Lead(email="ana@lead.example", phone="+639171234567")
        s.add(ana)
        s.flush()
        assert ana.id is not None
        s.add(Enrolment(campaign="welcome", lead_id=ana.id, enrolled_at=T0))
        for i, (step, channel, state) in enumerate(
            [("hello", "email", "sent"), ("nudge", "sms", "pending"), ("extra", "email", "pending")]
        ):
            s.add(
                Message(
                    campaign="welcome",
                    step=step,
                    step_index=i,
                    lead_id=ana.id,
                    channel=channel,
                    state=state,
                    due_at=T0 + timedelta(days=i),
                )
            )
    store.close()
    return project


def _db(project):
    store = Store(f"sqlite:///{project / 'campaignctl.db'}")
    with store.read() as s:
        optouts = {(o.channel, o.source) for o in s.exec(select(OptOut)).all()}
        messages = {m.step: (m.state, m.reason) for m in s.exec(select(Message)).all()}
        enrolments = {e.campaign: (e.state, e.reason) for e in s.exec(select(Enrolment)).all()}
        events = [(e.kind, e.channel) for e in s.exec(select(Event)).all()]
    store.close()
    return optouts, messages, enrolments, events


def test_optout_of_one_channel(cli, seeded):
    r = cli("-C", seeded, "leads", "optout", "0917 123 4567", "--channel", "sms")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == (
        "ana@lead.example opted out of channel sms: 1 sequence(s) stopped, "
        "2 pending message(s) skipped."
    )
    optouts, messages, enrolments, events = _db(seeded)
    assert optouts == {("sms", "manual")}
    # The minimal project's `welcome` stops on optout (the default), so its email goes too.
    assert messages == {
        "hello": ("sent", None),
        "nudge": ("skipped", "opted out (sms)"),
        "extra": ("skipped", "sequence stopped: optout"),
    }
    assert enrolments == {"welcome": ("stopped", "optout")}
    assert events == [("optout", "sms")]


def test_optout_of_every_channel_and_again(cli, seeded):
    r = cli("-C", seeded, "leads", "optout", "ANA@lead.example")
    assert r.exit_code == 0, r.output
    assert "ana@lead.example opted out of every channel" in r.stdout
    optouts, messages, _enrolments, _events = _db(seeded)
    assert optouts == {("*", "manual")}
    assert messages["nudge"] == ("skipped", "opted out (all channels)")
    assert messages["extra"] == ("skipped", "opted out (all channels)")

    again = cli("-C", seeded, "leads", "optout", "ana@lead.example", "--channel", "email")
    assert again.exit_code == 0
    assert "already opted out of channel email; nothing changed" in again.stdout
    assert _db(seeded)[0] == {("*", "manual")}
    assert len(_db(seeded)[3]) == 1


def test_unknown_lead_is_one_line_with_a_hint(cli, seeded):
    r = cli("-C", seeded, "leads", "optout", "nobody@else.example")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines == [
        "campaignctl: error: no lead with email or phone 'nobody@else.example'",
        "hint: find the lead with `campaignctl leads list --where \"'else.example' in email\"`",
    ]
    assert _db(seeded)[0] == set()


def test_unknown_channel_lists_the_configured_ones(cli, seeded):
    r = cli("-C", seeded, "leads", "optout", "ana@lead.example", "--channel", "whatsapp")
    assert r.exit_code == 2
    first = r.stderr.splitlines()[0]
    assert "no channel named 'whatsapp'" in first
    assert "(configured: email, sms)" in first
    assert _db(seeded)[0] == set()


def test_input_that_is_neither_email_nor_phone(cli, seeded):
    r = cli("-C", seeded, "leads", "optout", "ana")
    assert r.exit_code == 2
    assert r.stderr.startswith("campaignctl: error: 'ana': not an email address or a phone number")
    assert "Traceback" not in r.output


def test_optout_has_help_and_a_readme_section(cli):
    from tests.support import REPO

    r = cli("leads", "optout", "--help")
    assert r.exit_code == 0
    assert "--channel" in r.stdout
    assert "EMAIL_OR_PHONE" in r.stdout
    readme = (REPO / "README.md").read_text()
    assert "### `campaignctl leads optout EMAIL_OR_PHONE [--channel CHANNEL]`" in readme
