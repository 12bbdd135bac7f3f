"""A real `send` process killed around the provider call, then a rerun: never twice, never lost.

The fake holds the request (`LoopbackHTTP.hold`): "after" the provider accepted the message
(its answer never reaches the process), or "before" the provider handled it. The test SIGKILLs
the process at that moment, lets the fake go on, and runs `send` again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fakes.gmail import FakeGmail
from tests.fakes.http import Hold, LoopbackHTTP, Request
from tests.fakes.twilio import FakeTwilio
from tests.support import (
    JUAN,
    JUAN_PHONE,
    MARIA,
    MARIA_PHONE,
    Cli,
    add_leads,
    gmail_folder,
    row,
    send_process,
    travel,
    twilio_folder,
)

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")


def _is_gmail_send(r: Request) -> bool:
    return r.method == "POST" and r.path.endswith("/messages/send")


def _is_twilio_create(r: Request) -> bool:
    return r.method == "POST" and r.path.endswith("/Messages.json")


@pytest.fixture
def holds() -> Iterator[list[Hold]]:
    """Holds a test made; released at teardown so no server thread waits on a failed test."""
    made: list[Hold] = []
    yield made
    for h in made:
        h.release.set()


def _kill_while_held(
    folder: Path,
    http: LoopbackHTTP,
    match: Callable[[Request], bool],
    stage: str,
    holds: list[Hold],
) -> None:
    hold = http.hold(match, stage)
    holds.append(hold)
    proc = send_process(folder)
    try:
        hold.wait()
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate()) from None
    proc.kill()  # SIGKILL: no handler runs, nothing is recorded after the provider call
    proc.wait()
    hold.release.set()
    assert proc.returncode == -9


def _rerun(folder: Path) -> str:
    proc = send_process(folder)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    return out


def _state(folder: Path, lead_id: int, step: str = "hello") -> tuple[str, str | None]:
    m = row(folder, step, lead_id)
    return m.state, m.claimed_by


def test_gmail_killed_after_acceptance_is_reconciled_as_sent(
    tmp_path: Path, fake_gmail: FakeGmail, holds: list[Hold]
) -> None:
    folder = gmail_folder(tmp_path, fake_gmail)
    juan, maria = add_leads(folder, JUAN, MARIA)
    _kill_while_held(folder, fake_gmail.http, _is_gmail_send, "after", holds)
    (accepted,) = fake_gmail.sent  # Gmail has Juan's message; our record never happened
    assert accepted.to == "juan@example.com"
    state, claimed_by = _state(folder, juan)
    assert state == "sending"
    assert claimed_by
    assert row(folder, "hello", maria).state == "pending"

    out = _rerun(folder)
    assert f"reconciled message {row(folder, 'hello', juan).id}: sent" in out
    rec = row(folder, "hello", juan)
    assert (rec.state, rec.provider_id, rec.thread_id) == ("sent", accepted.id, accepted.thread_id)
    assert rec.message_id == accepted.header("Message-ID")
    assert rec.reason == "reconciled: the provider has it"
    searches = [r.arg("q") for r in fake_gmail.api_requests if r.method == "GET"]
    assert searches == [f"rfc822msgid:{rec.message_id.strip('<>')}"]
    # exactly once each: Juan's was not sent again, Maria's went on the rerun
    assert sorted(m.to for m in fake_gmail.sent) == [
        "juan@example.com",
        "maria@example.com",
    ]
    assert row(folder, "hello", maria).state == "sent"
    assert row(folder, "follow-up", juan).state == "pending"  # the sequence goes on


def test_gmail_killed_before_the_provider_got_it_is_sent_once_on_the_rerun(
    tmp_path: Path, fake_gmail: FakeGmail, holds: list[Hold]
) -> None:
    folder = gmail_folder(tmp_path, fake_gmail)
    (juan,) = add_leads(folder, JUAN)
    _kill_while_held(folder, fake_gmail.http, _is_gmail_send, "before", holds)
    assert fake_gmail.sent == []
    lost_id = row(folder, "hello", juan).message_id
    assert _state(folder, juan)[0] == "sending"

    out = _rerun(folder)
    assert f"reconciled message {row(folder, 'hello', juan).id}: not_sent" in out
    (sent,) = fake_gmail.sent
    rec = row(folder, "hello", juan)
    assert (rec.state, rec.provider_id, rec.attempts) == ("sent", sent.id, 2)
    searches = [r.arg("q") for r in fake_gmail.api_requests if r.method == "GET"]
    assert searches == [f"rfc822msgid:{str(lost_id).strip('<>')}"]
    # the second attempt is a new message with its own Message-ID
    assert sent.header("Message-ID") == rec.message_id != lost_id


@pytest.mark.parametrize("queued", [False, True])
def test_twilio_killed_after_acceptance_is_reconciled_as_sent(
    twilio_project: Path, fake_twilio: FakeTwilio, holds: list[Hold], queued: bool
) -> None:
    fake_twilio.hold_queue = queued  # still queued: no date_sent for the DateSent filter
    folder = twilio_folder(twilio_project)
    juan, maria = add_leads(folder, JUAN_PHONE, MARIA_PHONE)
    _kill_while_held(folder, fake_twilio.http, _is_twilio_create, "after", holds)
    (accepted,) = fake_twilio.messages
    assert accepted["to"] == JUAN_PHONE["phone"]
    assert _state(folder, juan)[0] == "sending"

    out = _rerun(folder)
    assert f"reconciled message {row(folder, 'hello', juan).id}: sent" in out
    rec = row(folder, "hello", juan)
    assert (rec.state, rec.provider_id) == ("sent", accepted["sid"])
    listed = [r for r in fake_twilio.http.requests if r.method == "GET"]
    assert listed[0].arg("From") == "+15005550006"  # one list for every lost SMS
    assert listed[0].arg("DateSent>") is not None
    assert [f["To"] for f in fake_twilio.created] == [JUAN_PHONE["phone"], MARIA_PHONE["phone"]]
    assert row(folder, "hello", maria).state == "sent"
    assert row(folder, "nudge", juan).state == "pending"


def test_an_sms_whose_text_changed_after_the_crash_is_reconciled_with_what_was_sent(
    twilio_project: Path, fake_twilio: FakeTwilio, holds: list[Hold]
) -> None:
    """The claim records the text handed to Twilio: reconcile matches on it, not on a new
    rendering of a step edited between the crash and the rerun (which was sent again)."""
    folder = twilio_folder(twilio_project)
    (juan,) = add_leads(folder, JUAN_PHONE)
    _kill_while_held(folder, fake_twilio.http, _is_twilio_create, "after", holds)
    (accepted,) = fake_twilio.messages
    toml = folder / "campaigns.toml"
    old = "Ana from Sunrise here. Reply STOP to opt out."
    toml.write_text(toml.read_text().replace(old, "Ana from Sunrise Realty. Reply STOP to stop."))

    out = _rerun(folder)
    assert f"reconciled message {row(folder, 'hello', juan).id}: sent" in out
    rec = row(folder, "hello", juan)
    assert (rec.state, rec.provider_id) == ("sent", accepted["sid"])
    assert [f["To"] for f in fake_twilio.created] == [JUAN_PHONE["phone"]]


def test_twilio_killed_before_the_provider_got_it_is_sent_once_on_the_rerun(
    twilio_project: Path, fake_twilio: FakeTwilio, holds: list[Hold]
) -> None:
    folder = twilio_folder(twilio_project)
    (juan,) = add_leads(folder, JUAN_PHONE)
    _kill_while_held(folder, fake_twilio.http, _is_twilio_create, "before", holds)
    assert fake_twilio.messages == []

    out = _rerun(folder)
    assert f"reconciled message {row(folder, 'hello', juan).id}: not_sent" in out
    (sent,) = fake_twilio.messages
    rec = row(folder, "hello", juan)
    assert (rec.state, rec.provider_id, rec.attempts) == ("sent", sent["sid"], 2)
    assert [f["To"] for f in fake_twilio.created] == [JUAN_PHONE["phone"]]


def test_a_send_that_was_never_killed_is_not_reconciled(
    tmp_path: Path, fake_gmail: FakeGmail
) -> None:
    """The control: an undisturbed run records the send itself and asks Gmail nothing."""
    folder = gmail_folder(tmp_path, fake_gmail)
    (juan,) = add_leads(folder, JUAN)
    out = _rerun(folder)
    assert "reconciled" not in out
    assert row(folder, "hello", juan).state == "sent"
    assert [r.method for r in fake_gmail.api_requests] == ["POST"]


def test_twilio_an_earlier_message_to_the_same_number_is_not_taken_for_the_lost_one(
    cli: Cli, twilio_project: Path, fake_twilio: FakeTwilio, holds: list[Hold]
) -> None:
    """Reconcile matches the body: Juan's hello, minutes old, is not the nudge that was lost."""
    folder = twilio_folder(twilio_project)
    (juan,) = add_leads(folder, JUAN_PHONE)
    assert cli("-C", folder, "send").exit_code == 0
    (hello,) = fake_twilio.messages
    travel(folder, timedelta(days=1))
    _kill_while_held(folder, fake_twilio.http, _is_twilio_create, "before", holds)
    assert len(fake_twilio.messages) == 1  # the nudge never reached Twilio

    out = _rerun(folder)
    assert f"reconciled message {row(folder, 'nudge', juan).id}: not_sent" in out
    hello_sid, nudge = hello["sid"], fake_twilio.messages[1]
    assert nudge["body"] == "Still looking for a home, Juan?"
    rec = row(folder, "nudge", juan)
    assert (rec.state, rec.provider_id) == ("sent", nudge["sid"])
    assert rec.provider_id != hello_sid
