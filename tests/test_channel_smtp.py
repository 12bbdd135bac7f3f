"""The SMTP channel through smtplib against aiosmtpd on loopback (plain, STARTTLS, TLS)."""

from __future__ import annotations

import pytest

from campaignctl.channels import ChannelError, ErrorKind, Reconciled, open_channel
from campaignctl.config import load
from tests.fakes.http import free_port
from tests.fakes.smtp import FakeSmtp
from tests.support import outgoing, write_project

PASSWORD = "s3cret-smtp-password"


def _project(folder, fake: FakeSmtp, *, security: str, login: bool = True):
    keys = [
        '[channels.email]\nprovider = "smtp"\nhost = "127.0.0.1"',
        f"port = {fake.port}",
        f'security = "{security}"',
        'timeout = "5s"',
    ]
    if login:
        keys += ['username = "ana"', 'password_env = "SMTP_PASSWORD"']
    if fake.cert_file:
        keys.append(f'ca_file = "{fake.cert_file}"')
    write_project(folder, "\n".join(keys) + "\n")
    return open_channel(load(folder / "campaigns.toml"), "email")


@pytest.fixture(autouse=True)
def _password(monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)


@pytest.mark.parametrize("security", ["starttls", "ssl", "none"])
def test_send_with_each_security_mode(tmp_path, fake_smtp, security):
    fake = fake_smtp(security=security, users={"ana": PASSWORD})
    ch = _project(tmp_path, fake, security=security)
    msg = outgoing()
    sent = ch.send(msg)
    ch.send(outgoing(id=2, to="maria@example.com"))  # the kept connection is reused
    ch.close()

    assert sent.provider_id == msg.rfc_message_id
    first, second = fake.received
    assert first.mail_from == "ana@sunrise.example"
    assert first.rcpt_tos == ["juan@example.com"]
    assert first.login == "ana"
    assert fake.auth_attempts == ["ana"]  # one login: one connection for both messages
    mime = first.message
    assert mime.get_content_type() == "multipart/alternative"
    assert mime["Message-ID"] == msg.rfc_message_id
    assert mime["From"] == "Ana Cruz <ana@sunrise.example>"
    assert "mailto:ana@sunrise.example" in mime["List-Unsubscribe"]
    assert second.rcpt_tos == ["maria@example.com"]


def test_thread_headers(tmp_path, fake_smtp):
    fake = fake_smtp()
    ch = _project(tmp_path, fake, security="none", login=False)
    ch.send(outgoing(in_reply_to="<first@sunrise.example>", subject="Welcome, Juan!"))
    mime = fake.received[0].message
    assert mime["Subject"] == "Re: Welcome, Juan!"
    assert mime["In-Reply-To"] == mime["References"] == "<first@sunrise.example>"


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("550 5.1.1 No such user", ErrorKind.PERMANENT),
        ("553 5.1.3 Bad recipient address syntax", ErrorKind.PERMANENT),
        ("450 4.2.1 Mailbox busy", ErrorKind.TRANSIENT),
        ("452 4.5.3 Too many recipients", ErrorKind.TRANSIENT),
    ],
)
def test_recipient_refusals(tmp_path, fake_smtp, reply, kind):
    fake = fake_smtp()
    ch = _project(tmp_path, fake, security="none", login=False)
    fake.refused_recipients["juan@example.com"] = reply
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing())
    assert caught.value.kind is kind
    assert caught.value.code == reply[:3]
    assert reply[4:] in caught.value.message
    # the session survives a refused recipient: the next message goes through
    ch.send(outgoing(id=2, to="maria@example.com"))
    assert [r.rcpt_tos for r in fake.received] == [["maria@example.com"]]


@pytest.mark.parametrize(
    ("stage", "reply", "kind"),
    [
        ("DATA", "451 4.3.0 Try again later", ErrorKind.TRANSIENT),
        ("DATA", "554 5.7.1 Message rejected as spam", ErrorKind.PERMANENT),
        ("MAIL", "421 4.7.0 Too many connections", ErrorKind.TRANSIENT),
        ("MAIL", "553 5.7.1 Sender not owned by user", ErrorKind.AUTH),
    ],
)
def test_server_refusals(tmp_path, fake_smtp, stage, reply, kind):
    fake = fake_smtp()
    ch = _project(tmp_path, fake, security="none", login=False)
    fake.fail_next(stage, reply)
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing())
    assert caught.value.kind is kind
    assert caught.value.code == reply[:3]
    assert fake.received == []
    ch.send(outgoing(id=2))  # reconnects after smtplib gave up on the session
    assert len(fake.received) == 1


def test_login_refused_is_an_auth_error_without_the_password(tmp_path, fake_smtp, monkeypatch):
    fake = fake_smtp(security="starttls", users={"ana": "another password"})
    ch = _project(tmp_path, fake, security="starttls")
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing())
    exc = caught.value
    assert (exc.kind, exc.code, exc.exit_code) == (ErrorKind.AUTH, "535", 78)
    assert "$SMTP_PASSWORD" in (exc.hint or "")
    assert PASSWORD not in f"{exc.message} {exc.hint}"


def test_missing_password_variable(tmp_path, fake_smtp, monkeypatch):
    monkeypatch.delenv("SMTP_PASSWORD")
    with pytest.raises(ChannelError) as caught:
        _project(tmp_path, fake_smtp(), security="none")
    assert caught.value.kind is ErrorKind.AUTH
    assert "SMTP_PASSWORD is not set" in caught.value.message


def test_untrusted_certificate_stops_the_channel(tmp_path, fake_smtp):
    fake = fake_smtp(security="ssl")
    fake.cert_file = None  # the client is not told to trust the self-signed certificate
    ch = _project(tmp_path, fake, security="ssl", login=False)
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing())
    assert caught.value.kind is ErrorKind.AUTH
    assert "ca_file" in (caught.value.hint or "")


def test_connection_refused_is_transient(tmp_path):
    port = free_port()
    write_project(
        tmp_path,
        f'[channels.email]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {port}\n'
        'security = "none"\n',
    )
    ch = open_channel(load(tmp_path / "campaigns.toml"), "email")
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing())
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.maybe_sent is False


def test_reconcile_cannot_tell(tmp_path, fake_smtp):
    ch = _project(tmp_path, fake_smtp(), security="none", login=False)
    msg = outgoing()
    ch.send(msg)
    assert ch.reconcile(msg).outcome is Reconciled.UNKNOWN


def test_a_message_bigger_than_the_relay_takes_fails_alone(tmp_path, fake_smtp):
    """A relay that advertises `SIZE 20000` refuses a bigger message at MAIL FROM (smtplib
    declares the size) with 552: that message fails for good, with the sizes in words, and the
    channel goes on with the next. Before, the 552 on MAIL FROM read as the relay refusing
    our sender: an AUTH error that stopped the whole channel."""
    fake = fake_smtp(size_limit=20_000)
    ch = _project(tmp_path, fake, security="none", login=False)
    big = outgoing(text="x" * 30_000, html=None)
    with pytest.raises(ChannelError) as err:
        ch.send(big)
    assert err.value.kind is ErrorKind.PERMANENT
    assert err.value.code == "unsendable"
    assert "over the 19.5 KB the relay takes (SIZE 20000)" in err.value.message
    assert fake.received == []
    ch.send(outgoing(id=2, to="maria@example.com"))
    ch.close()
    assert [r.rcpt_tos for r in fake.received] == [["maria@example.com"]]


def test_a_552_at_mail_from_is_the_message_not_the_sender(tmp_path, fake_smtp):
    """A relay that refuses the size at MAIL FROM without having said its limit (552 5.3.4):
    the message fails, the channel is not stopped."""
    fake = fake_smtp()
    ch = _project(tmp_path, fake, security="none", login=False)
    fake.fail_next("MAIL", "552 5.3.4 Message size exceeds fixed maximum message size")
    with pytest.raises(ChannelError) as err:
        ch.send(outgoing())
    assert err.value.kind is ErrorKind.PERMANENT
    assert err.value.code == "552"
    ch.send(outgoing(id=2, to="maria@example.com"))
    assert len(fake.received) == 1
