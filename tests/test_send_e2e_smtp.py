"""`campaignctl send` end to end through SMTP: smtplib against real aiosmtpd on loopback."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email.headerregistry import Address, AddressHeader
from email.message import Message
from pathlib import Path

import pytest

from tests.fakes.smtp import FakeSmtp
from tests.support import (
    EMAIL_CAMPAIGN,
    JUAN,
    MARIA,
    Cli,
    add_leads,
    row,
    rows,
    status_steps,
    travel,
    utc,
    write_email_template,
    write_project,
)

PASSWORD = "relay-password-42"  # a test value


def _to(message: Message) -> Address:
    header = message["To"]
    assert isinstance(header, AddressHeader)
    (to,) = header.addresses
    return to


def _relay_project(folder: Path, fake: FakeSmtp, *, security: str = "starttls") -> None:
    """A project sending through `fake` with security `security`, logging in when it has users."""
    keys = [f"port = {fake.port}", f'security = "{security}"']
    if fake.users:
        keys += ['username = "ana"', 'password_env = "SMTP_PASSWORD"']
    if fake.cert_file:
        keys.append(f'ca_file = "{fake.cert_file}"')
    write_email_template(folder)
    write_project(
        folder,
        '[channels.email]\nprovider = "smtp"\nhost = "127.0.0.1"\n' + "\n".join(keys) + "\n",
        EMAIL_CAMPAIGN,
    )


@pytest.fixture
def relay(
    tmp_path: Path, fake_smtp: Callable[..., FakeSmtp], monkeypatch: pytest.MonkeyPatch
) -> FakeSmtp:
    """A STARTTLS relay with a login, and a project sending through it."""
    fake = fake_smtp(security="starttls", users={"ana": PASSWORD})
    assert fake.cert_file is not None
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    _relay_project(tmp_path, fake)
    return fake


def test_a_real_send(cli: Cli, tmp_path: Path, relay: FakeSmtp) -> None:
    juan, maria = add_leads(tmp_path, JUAN, MARIA)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    assert "summary: sent 2, failed 0" in res.stdout
    assert [(r.mail_from, r.rcpt_tos, r.login) for r in relay.received] == [
        ("ana@sunrise.example", ["juan@example.com"], "ana"),
        ("ana@sunrise.example", ["maria@example.com"], "ana"),
    ]
    for got, lead_id, lead in zip(relay.received, (juan, maria), (JUAN, MARIA), strict=True):
        rec = row(tmp_path, "hello", lead_id)
        assert rec.state == "sent"
        assert got.message["Message-ID"] == rec.message_id == rec.provider_id
        assert got.message["From"] == "Ana Cruz <ana@sunrise.example>"
        assert _to(got.message).addr_spec == lead["email"]
        assert _to(got.message).display_name == lead["first_name"]
        assert got.message["Subject"] == f"Welcome, {lead['first_name']}!"
        assert got.message["List-Unsubscribe"].endswith(
            ", <mailto:ana@sunrise.example?subject=unsubscribe>"
        )
        assert b"12 Ayala Ave, Makati City" in got.data
    assert PASSWORD not in res.stdout + res.stderr
    assert status_steps(cli, tmp_path)["hello"]["sent"] == 2


def test_550_fails_that_message_while_others_go(cli: Cli, tmp_path: Path, relay: FakeSmtp):
    juan, maria = add_leads(tmp_path, JUAN, MARIA)
    relay.refused_recipients["juan@example.com"] = "550 5.1.1 <juan@example.com>: no such user"
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 1
    assert "550 5.1.1" in res.stderr
    failed = row(tmp_path, "hello", juan)
    assert (failed.state, failed.error_code) == ("failed", "550")
    assert "no such user" in (failed.error or "")
    assert row(tmp_path, "hello", maria).state == "sent"
    assert [r.rcpt_tos for r in relay.received] == [["maria@example.com"]]


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_421_is_retried_later(cli: Cli, tmp_path: Path, relay: FakeSmtp, stage: str) -> None:
    (juan,) = add_leads(tmp_path, JUAN)
    relay.fail_next(stage, "421 4.3.2 service not available, try later")
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 75
    held = row(tmp_path, "hello", juan)
    assert (held.state, held.attempts, held.error_code) == ("pending", 1, "421")
    wait = utc(held.due_at) - utc(held.claimed_at)
    assert timedelta(minutes=1) <= wait <= timedelta(minutes=2)
    assert relay.received == []

    travel(tmp_path, wait)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    assert len(relay.received) == 1
    done = row(tmp_path, "hello", juan)
    assert (done.state, done.attempts) == ("sent", 2)
    assert relay.received[0].message["Message-ID"] == done.message_id


def test_refused_login_exits_78_and_leaves_the_message_pending(
    cli: Cli, tmp_path: Path, relay: FakeSmtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    juan, maria = add_leads(tmp_path, JUAN, MARIA)
    monkeypatch.setenv("SMTP_PASSWORD", "not-the-password")
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 78
    assert "login refused: 535" in res.stderr
    assert "hint: check username and the password in $SMTP_PASSWORD" in res.stderr
    assert "not-the-password" not in res.stdout + res.stderr
    # one login (smtplib tries PLAIN, then LOGIN), then the channel stops: not one per message
    assert relay.auth_attempts == ["ana", "ana"]
    for lead_id in (juan, maria):
        m = row(tmp_path, "hello", lead_id)
        assert (m.state, m.attempts, m.claimed_by) == ("pending", 0, None)
    assert relay.received == []


def test_a_connection_lost_after_data_leaves_the_message_uncertain_for_good(
    cli: Cli, tmp_path: Path, relay: FakeSmtp
) -> None:
    """SMTP cannot be asked whether the relay took it: never resent, and status says so."""
    juan, maria = add_leads(tmp_path, JUAN, MARIA)
    relay.drop_next_data()
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr  # Maria's went
    assert "summary: sent 1, failed 0, skipped 0, retrying 0, uncertain 1" in res.stdout
    assert [r.rcpt_tos for r in relay.received] == [["juan@example.com"], ["maria@example.com"]]
    assert row(tmp_path, "hello", juan).state == "uncertain"

    travel(tmp_path, timedelta(days=2))
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    assert "summary: sent 1, failed 0, skipped 0, retrying 0, uncertain 1" in res.stdout
    assert len(relay.received) == 3  # Maria's follow-up; Juan's hello not again
    unsure = row(tmp_path, "hello", juan)
    assert unsure.state == "uncertain"
    assert unsure.reason == "the provider may have it: reconciled before any retry"
    assert row(tmp_path, "follow-up", maria).state == "sent"
    assert status_steps(cli, tmp_path)["hello"]["uncertain"] == 1
    res = cli("-C", tmp_path, "status")
    assert "1 message(s) uncertain" in res.stderr


JOSE_CSV = (
    'email,first_name,last_name\njosé@example.org,José,"Muñoz, Jr."\nmaria@example.com,Maria,\n'
)


def _import_jose(cli: Cli, folder: Path) -> None:
    (folder / "leads.csv").write_text(JOSE_CSV, encoding="utf-8")
    res = cli("-C", folder, "leads", "import", folder / "leads.csv")
    assert res.exit_code == 0, res.stderr
    assert "│    2 │        2 │" in res.stdout, res.stdout  # read 2, inserted 2


def _lead_id(folder: Path, email: str) -> int:
    (found,) = {m.lead_id for m in rows(folder) if m.recipient == email}
    return found


def test_an_address_outside_ascii_goes_with_smtputf8(
    cli: Cli, tmp_path: Path, relay: FakeSmtp
) -> None:
    """issue 9 #4: `josé@example.org` crashed smtplib on a compat32 message, uncertain for good."""
    _import_jose(cli, tmp_path)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    assert "summary: sent 2, failed 0, skipped 0, retrying 0, uncertain 0" in res.stdout
    jose, maria = sorted(relay.received, key=lambda r: r.rcpt_tos[0] != "josé@example.org")
    assert jose.rcpt_tos == ["josé@example.org"]
    assert "SMTPUTF8" in jose.mail_options
    assert "SMTPUTF8" not in maria.mail_options  # an ASCII message stays 7-bit
    assert maria.data.isascii()
    to = _to(jose.message)
    assert (to.addr_spec, to.display_name) == ("josé@example.org", "José Muñoz, Jr.")
    assert "josé@example.org".encode() in jose.data  # raw UTF-8 (RFC 6532), never RFC 2047
    assert b"=?utf-8?b?am9zw6lA" not in jose.data
    assert jose.message["Subject"] == "Welcome, José!"
    assert row(tmp_path, "hello", _lead_id(tmp_path, "josé@example.org")).state == "sent"


def test_without_smtputf8_an_address_outside_ascii_fails_for_good(
    cli: Cli, tmp_path: Path, fake_smtp: Callable[..., FakeSmtp]
) -> None:
    fake = fake_smtp(smtputf8=False)
    _relay_project(tmp_path, fake, security="none")
    _import_jose(cli, tmp_path)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 1
    assert "summary: sent 1, failed 1, skipped 0, retrying 0, uncertain 0" in res.stdout
    assert "server does not support SMTPUTF8, needed for josé@example.org" in res.stderr
    assert [r.rcpt_tos for r in fake.received] == [["maria@example.com"]]
    failed = row(tmp_path, "hello", _lead_id(tmp_path, "josé@example.org"))
    assert (failed.state, failed.error_code) == ("failed", "smtputf8")
    assert "server does not support SMTPUTF8, needed for josé@example.org" in (failed.error or "")
    # permanent: a later pass does not try it again
    travel(tmp_path, timedelta(days=1))
    cli("-C", tmp_path, "send")
    assert all(r.rcpt_tos != ["josé@example.org"] for r in fake.received)
    assert row(tmp_path, "hello", _lead_id(tmp_path, "josé@example.org")).state == "failed"


@pytest.mark.parametrize("login", [False, True])
def test_plain_connection_to_a_starttls_only_relay_points_at_security(
    cli: Cli,
    tmp_path: Path,
    fake_smtp: Callable[..., FakeSmtp],
    monkeypatch: pytest.MonkeyPatch,
    login: bool,
) -> None:
    """issue 9 #23: "530 Must issue a STARTTLS command first" hinted at `[sender] email`."""
    fake = fake_smtp(security="starttls", users={"ana": PASSWORD} if login else None)
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    _relay_project(tmp_path, fake, security="none")
    (juan,) = add_leads(tmp_path, JUAN)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 78  # a person must fix the campaign file
    said = "the relay offers login only after STARTTLS" if login else "530"
    assert said in res.stderr
    assert 'hint: set channels.email.security = "starttls" in the campaign file' in res.stderr
    assert "[sender]" not in res.stderr
    assert row(tmp_path, "hello", juan).state == "pending"
    assert fake.received == []
