"""`campaignctl send --test-to`: one real message through the step's channel, marked as a test,
counted by the channel's limits, touching no lead's progress (issue 12, item 4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.smtp import FakeSmtp
from tests.fakes.twilio import FakeTwilio
from tests.support import (
    EMAIL_CAMPAIGN,
    JUAN,
    MARIA,
    OUTBOX_CHANNELS,
    Cli,
    add_leads,
    enrolments,
    open_store,
    rows,
    status_steps,
    twilio_folder,
    write_email_template,
    write_project,
)

ME = "me@sunrise.example"
MY_PHONE = "+63 917 555 0100"


def _smtp_project(folder: Path, fake: FakeSmtp, status: str = "active") -> Path:
    write_email_template(folder)
    return write_project(
        folder,
        f'[channels.email]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {fake.port}\n'
        'security = "none"\n',
        EMAIL_CAMPAIGN.replace('status = "active"', f'status = "{status}"'),
    )


def _outbox_project(folder: Path, daily_limit: int = 100) -> Path:
    write_email_template(folder)
    return write_project(
        folder,
        OUTBOX_CHANNELS.replace("daily_limit = 100", f"daily_limit = {daily_limit}"),
        EMAIL_CAMPAIGN,
    )


def _timeline(cli: Cli, folder: Path, lead: str) -> list[tuple[str, ...]]:
    """What `explain` says about a lead, without the times (it says "as of now")."""
    res = cli("-C", folder, "explain", lead, "--format", "json")
    assert res.exit_code == 0, res.stderr
    return [
        (e["what"], e["campaign"], e["step"], e["text"]) for e in json.loads(res.stdout)["timeline"]
    ]


def test_an_email_test_send_over_smtp(
    cli: Cli, tmp_path: Path, fake_smtp: Callable[..., FakeSmtp]
) -> None:
    relay = fake_smtp()
    _smtp_project(tmp_path, relay)
    add_leads(tmp_path, JUAN, MARIA)
    before = status_steps(cli, tmp_path)
    explained = _timeline(cli, tmp_path, JUAN["email"])
    res = cli("-C", tmp_path, "send", "--test-to", "Me@Sunrise.Example", "--campaign", "welcome")
    assert res.exit_code == 0, res.stderr
    (got,) = relay.received
    assert got.rcpt_tos == [ME]
    msg = got.message
    assert msg["Subject"] == "[TEST] Welcome, Juan!"  # rendered for the first lead
    assert msg["X-Campaignctl-Test"] == "1"
    assert "List-Unsubscribe" in msg
    line = res.stdout.strip()
    assert len(line.splitlines()) == 1
    assert f"sent to {ME} via email: welcome/hello" in line
    assert f"provider id {msg['Message-ID']}" in line
    # no lead's progress: no enrolment, no message, the same status
    assert rows(tmp_path) == []
    assert enrolments(tmp_path) == {}
    assert status_steps(cli, tmp_path) == before
    assert _timeline(cli, tmp_path, JUAN["email"]) == explained


def test_a_thread_step_for_a_named_lead_on_a_draft_campaign(
    cli: Cli, tmp_path: Path, fake_smtp: Callable[..., FakeSmtp]
) -> None:
    relay = fake_smtp()
    _smtp_project(tmp_path, relay, status="draft")
    add_leads(tmp_path, JUAN, MARIA)
    res = cli(
        "-C", tmp_path, "send", "--test-to", ME, "--campaign", "welcome",
        "--step", "follow-up", "--lead", MARIA["email"],
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    (got,) = relay.received
    assert got.message["Subject"] == "[TEST] Re: Welcome, Maria!"
    body = got.message.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "Just checking you saw my note, Maria." in body.decode()
    assert f"rendered for {MARIA['email']} (from the database)" in res.stdout
    assert rows(tmp_path) == []


def test_a_twilio_test_send_reaches_twilio_with_the_prefix(
    cli: Cli, twilio_project: Path, fake_twilio: FakeTwilio
) -> None:
    twilio_folder(twilio_project)
    (twilio_project / "campaigns.toml").write_text(
        (twilio_project / "campaigns.toml").read_text().replace('"active"', '"draft"')
    )
    res = cli("-C", twilio_project, "send", "--test-to", MY_PHONE, "--campaign", "texts")
    assert res.exit_code == 0, res.stderr
    (sent,) = fake_twilio.created
    assert sent["To"] == "+639175550100"  # normalised as import does
    assert sent["Body"].startswith("[TEST] Hi María, Ana from Sunrise here.")  # a sample lead
    sid = fake_twilio.messages[0]["sid"]
    assert f"provider id {sid}" in res.stdout
    assert "built-in sample lead" in res.stdout


def test_a_test_send_counts_against_the_daily_limit(cli: Cli, tmp_path: Path) -> None:
    _outbox_project(tmp_path, daily_limit=1)
    add_leads(tmp_path, JUAN)
    res = cli("-C", tmp_path, "send", "--test-to", ME, "--campaign", "welcome")
    assert res.exit_code == 0, res.stderr
    (eml,) = (tmp_path / "outbox").iterdir()
    assert eml.name.startswith("test-")
    assert "[TEST] Welcome, Juan!" in eml.read_text()
    res = cli("-C", tmp_path, "send")
    assert "sent 0" in res.stdout, res.stdout
    assert "deferred 1 by limit" in res.stdout
    (msg,) = rows(tmp_path)
    assert msg.state == "pending"
    res = cli("-C", tmp_path, "send", "--test-to", ME, "--campaign", "welcome")
    assert res.exit_code == 75
    assert "channel email: daily limit reached" in res.stderr
    assert "it frees up at" in res.stderr


def test_the_daemon_view_counts_test_sends(cli: Cli, tmp_path: Path) -> None:
    """`store.messages.sent_counts` (the 24-hour figure beside daily_limit) includes tests."""
    from datetime import UTC, datetime, timedelta

    from campaignctl.store import messages

    _outbox_project(tmp_path)
    assert cli("-C", tmp_path, "send", "--test-to", ME, "--campaign", "welcome").exit_code == 0
    store = open_store(tmp_path)
    try:
        with store.read() as s:
            counts = messages.sent_counts(s, datetime.now(UTC) - timedelta(days=1))
    finally:
        store.close()
    assert counts == {"email": 1}


def test_the_address_must_suit_the_channel(cli: Cli, tmp_path: Path) -> None:
    _outbox_project(tmp_path)
    res = cli("-C", tmp_path, "send", "--test-to", MY_PHONE, "--campaign", "welcome")
    assert res.exit_code == 2
    assert "step 'hello' sends email" in res.stderr
    assert "needs an email address" in res.stderr
    assert not (tmp_path / "campaignctl.db").exists()


def test_an_sms_step_needs_a_phone(cli: Cli, twilio_project: Path, fake_twilio: FakeTwilio) -> None:
    twilio_folder(twilio_project)
    res = cli("-C", twilio_project, "send", "--test-to", ME, "--campaign", "texts")
    assert res.exit_code == 2
    assert "sends sms" in res.stderr
    assert "needs a phone number" in res.stderr
    assert fake_twilio.created == []


def test_refused_credentials_exit_78(
    cli: Cli, twilio_project: Path, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    twilio_folder(twilio_project)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong-token")
    res = cli("-C", twilio_project, "send", "--test-to", MY_PHONE, "--campaign", "texts")
    assert res.exit_code == 78, res.stderr
    assert "campaignctl auth twilio" in res.stderr
    assert fake_twilio.created == []


def test_provider_errors(cli: Cli, twilio_project: Path, fake_twilio: FakeTwilio) -> None:
    twilio_folder(twilio_project)
    args = ("-C", twilio_project, "send", "--test-to", MY_PHONE, "--campaign", "texts")
    fake_twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    res = cli(*args)
    assert res.exit_code == 1
    assert "not a valid phone number" in res.stderr
    fake_twilio.fail_next(429, 20429, "Too Many Requests")
    res = cli(*args)
    assert res.exit_code == 75
    assert "Too Many Requests" in res.stderr
    # refused messages never went out: the limits do not count them
    store = open_store(twilio_project)
    try:
        from datetime import UTC, datetime, timedelta

        from campaignctl.store import messages

        with store.read() as s:
            since = datetime.now(UTC) - timedelta(days=1)
            assert messages.send_history(s, "sms", since) == []
        # a 5xx may have reached the carrier: that one keeps counting
        fake_twilio.fail_next(500, None, "Internal Server Error")
        res = cli(*args)
        assert res.exit_code == 75
        with store.read() as s:
            assert len(messages.send_history(s, "sms", since)) == 1
    finally:
        store.close()


def test_the_send_lock(cli: Cli, tmp_path: Path) -> None:
    _outbox_project(tmp_path)
    add_leads(tmp_path, JUAN)
    store = open_store(tmp_path)
    lock = store.send_lock()
    assert lock is not None
    lock.acquire()
    try:
        res = cli("-C", tmp_path, "send", "--test-to", ME, "--campaign", "welcome")
    finally:
        lock.release()
        store.close()
    assert res.exit_code == 75
    assert not (tmp_path / "outbox").exists()


def test_dry_run_prints_the_message_and_sends_nothing(cli: Cli, tmp_path: Path) -> None:
    _outbox_project(tmp_path)
    res = cli("-C", tmp_path, "send", "--test-to", ME, "--campaign", "welcome", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "Subject: [TEST] Welcome, María!" in res.stdout  # a built-in sample lead
    assert "Ana from Sunrise here." in res.stdout
    assert "dry run: nothing sent" in res.stdout
    assert not (tmp_path / "outbox").exists()
    assert not (tmp_path / "campaignctl.db").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--campaign", "welcom"), "did you mean 'welcome'"),
        (("--campaign", "welcome", "--step", "folow-up"), "did you mean 'follow-up'"),
        (("--campaign", "welcome", "--limit", "3"), "--limit cannot be used with it"),
        (("--campaign", "welcome", "--max-time", "1m"), "--max-time cannot be used"),
        (("--campaign", "welcome", "--channel", "email"), "--channel cannot be used"),
        ((), "--test-to needs one --campaign"),
    ],
)
def test_usage_errors(cli: Cli, tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    _outbox_project(tmp_path)
    res = cli("-C", tmp_path, "send", "--test-to", ME, *args)
    assert res.exit_code == 2
    assert needle in res.stderr
    assert not (tmp_path / "campaignctl.db").exists()


def test_step_and_lead_need_test_to(cli: Cli, tmp_path: Path) -> None:
    _outbox_project(tmp_path)
    res = cli("-C", tmp_path, "send", "--step", "hello")
    assert res.exit_code == 2
    assert "--step is for a test send" in res.stderr


def test_an_unknown_lead(cli: Cli, tmp_path: Path) -> None:
    _outbox_project(tmp_path)
    add_leads(tmp_path, JUAN)
    res = cli(
        "-C", tmp_path, "send", "--test-to", ME, "--campaign", "welcome", "--lead", "no@x.org"
    )
    assert res.exit_code == 2
    assert "no lead with email or phone" in res.stderr
    assert json.loads(json.dumps(rows(tmp_path))) == []
