"""The Gmail channel through googleapiclient + google-auth, over HTTP to the loopback fake."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from campaignctl.channels import ChannelError, CredentialsError, ErrorKind, Reconciled, open_channel
from campaignctl.channels.base import Reconciliation
from campaignctl.config import load
from tests.fakes.gmail import CLIENT_SECRET, REFRESH_TOKEN, FakeGmail
from tests.fakes.http import free_port
from tests.support import outgoing, write_project


def _open(project: Path):
    return open_channel(load(project / "campaigns.toml"), "email")


def _no_secrets(exc: ChannelError, *extra: str) -> None:
    shown = f"{exc.message} {exc.hint or ''}"
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, "ya29.", *extra):
        assert secret not in shown


def test_send_refreshes_the_token_and_writes_it_back_0600(gmail_project, fake_gmail):
    token_file = gmail_project / "gmail-token.json"
    token_file.chmod(0o644)  # the write-back must tighten it, not keep it
    ch = _open(gmail_project)
    msg = outgoing()
    sent = ch.send(msg)
    ch.close()

    assert [r["grant_type"] for r in fake_gmail.token_requests] == ["refresh_token"]
    saved = json.loads(token_file.read_text())
    assert saved["token"] in fake_gmail.valid_tokens
    assert saved["token_uri"] == fake_gmail.token_uri
    assert saved["refresh_token"] == REFRESH_TOKEN
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    (stored,) = fake_gmail.sent
    assert sent.provider_id == stored.id
    assert sent.thread_id == stored.thread_id


def test_raw_mime_has_alternative_parts_and_headers(gmail_project, fake_gmail):
    ch = _open(gmail_project)
    msg = outgoing()
    ch.send(msg)
    (req,) = [r for r in fake_gmail.api_requests if r.path.endswith("/messages/send")]
    assert req.path == "/gmail/v1/users/me/messages/send"
    body = req.json()
    assert "threadId" not in body
    raw = base64.urlsafe_b64decode(body["raw"] + "==")
    mime = fake_gmail.sent[0].mime
    assert mime.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mime.iter_parts()] == ["text/plain", "text/html"]
    assert mime["From"] == "Ana Cruz <ana@sunrise.example>"
    assert mime["To"] == "juan@example.com"
    assert mime["Subject"] == "Welcome, Juan!"
    assert mime["Message-ID"] == msg.rfc_message_id
    assert mime["List-Unsubscribe"] == (
        "<https://sunrise.example/unsubscribe>, <mailto:ana@sunrise.example?subject=unsubscribe>"
    )
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"12 Ayala Ave" in raw
    assert "In-Reply-To" not in mime


def test_thread_step_goes_into_the_first_thread(gmail_project, fake_gmail):
    ch = _open(gmail_project)
    first = outgoing()
    sent1 = ch.send(first)
    follow = outgoing(
        id=2,
        step="follow-up",
        text="Just checking you saw my note.",
        html=None,
        subject=first.subject,
        in_reply_to=first.rfc_message_id,
        thread_id=sent1.thread_id,
    )
    sent2 = ch.send(follow)

    send_bodies = [r.json() for r in fake_gmail.api_requests if r.path.endswith("/send")]
    assert send_bodies[1]["threadId"] == sent1.thread_id
    mime = fake_gmail.messages[sent2.provider_id].mime
    assert mime["Subject"] == "Re: Welcome, Juan!"
    assert mime["In-Reply-To"] == first.rfc_message_id
    assert mime["References"] == first.rfc_message_id
    assert mime.get_content_type() == "text/plain"
    # the fake threads only like Gmail: matching subject and references
    assert sent2.thread_id == sent1.thread_id


def test_reconcile_finds_a_sent_message_by_its_message_id(gmail_project, fake_gmail):
    ch = _open(gmail_project)
    msg = outgoing()
    sent = ch.send(msg)
    found = ch.reconcile(msg)
    assert found.outcome is Reconciled.SENT
    assert found.provider_id == sent.provider_id
    assert found.thread_id == sent.thread_id
    lists = [r for r in fake_gmail.api_requests if r.path.endswith("/messages")]
    assert msg.rfc_message_id
    assert lists[-1].arg("q") == f"rfc822msgid:{msg.rfc_message_id.strip('<>')}"

    never = outgoing(id=2, rfc_message_id="<never-sent@sunrise.example>")
    assert ch.reconcile(never).outcome is Reconciled.NOT_SENT


def test_reconcile_many_searches_once_and_leaves_unknown_what_it_could_not_read(
    gmail_project, fake_gmail
):
    ch = _open(gmail_project)
    a, b = outgoing(id=1), outgoing(id=2, to="maria@example.com")
    never = outgoing(id=3, rfc_message_id="<never-sent@sunrise.example>")
    bare = outgoing(id=4, rfc_message_id=None)
    sent_a, sent_b = ch.send(a), ch.send(b)
    assert a.rfc_message_id != b.rfc_message_id
    # one of the two found cannot be read: those of the search left unmatched stay unknown
    fake_gmail.fail_next(503, path=f"/messages/{sent_b.provider_id}")
    got = ch.reconcile_many([a, b, never, bare])
    assert got[1] == Reconciliation(Reconciled.SENT, sent_a.provider_id, sent_a.thread_id)
    assert {got[i].outcome for i in (2, 3, 4)} == {Reconciled.UNKNOWN}
    got = ch.reconcile_many([a, b, never, bare])
    assert got[2] == Reconciliation(Reconciled.SENT, sent_b.provider_id, sent_b.thread_id)
    assert (got[3].outcome, got[4].outcome) == (Reconciled.NOT_SENT, Reconciled.UNKNOWN)
    searches = [r.arg("q") for r in fake_gmail.api_requests if r.path.endswith("/messages")]
    assert len(searches) == 2 == len(fake_gmail.batch_requests)  # one search, one batch each
    assert (
        searches[0]
        == searches[1]
        == "{"
        + " ".join(f"rfc822msgid:{str(m.rfc_message_id).strip('<>')}" for m in (a, b, never))
        + "}"
    )


def test_the_fake_searches_with_or_as_gmail_does():
    from tests.fakes.gmail import _parse_query

    # OR binds tighter than the implicit AND; `{a b}` is `a OR b`
    assert _parse_query("{a b} c") == [["a", "b"], ["c"]]
    assert _parse_query("a OR b c") == [["a", "b"], ["c"]]
    assert _parse_query('subject:"x y" OR {c d}') == [['subject:"x y"', "c", "d"]]
    for bad in ("{a", "a}", "{}", "{a {b}}"):
        with pytest.raises(ValueError, match=r"'[{}]'"):
            _parse_query(bad)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "rateLimitExceeded"), (403, "userRateLimitExceeded"), (500, "backendError")],
)
def test_rate_limits_and_server_errors_are_transient(gmail_project, fake_gmail, status, reason):
    ch = _open(gmail_project)
    fake_gmail.fail_next(status, reason=reason, path="/send", retry_after=7)
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing())
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.code == str(status)
    assert caught.value.retry_after == 7
    # exactly one attempt: the engine owns retries
    assert len([r for r in fake_gmail.api_requests if r.path.endswith("/send")]) == 1
    assert fake_gmail.sent == []


def test_invalid_recipient_is_permanent(gmail_project, fake_gmail):
    ch = _open(gmail_project)
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing(to="juan at example"))
    assert caught.value.kind is ErrorKind.PERMANENT
    assert caught.value.code == "400"
    assert "Invalid To header" in caught.value.message


def test_401_after_a_refresh_is_an_auth_error_with_the_fix(gmail_project, fake_gmail):
    ch = _open(gmail_project)
    fake_gmail.reject_tokens = True
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing())
    exc = caught.value
    assert isinstance(exc, CredentialsError)
    assert exc.kind is ErrorKind.AUTH
    assert exc.exit_code == 78  # a person must act; 75 would read "try again later"
    assert "campaignctl auth gmail" in (exc.hint or "")
    # refreshed once for the expired token, then again after the 401
    assert len(fake_gmail.token_requests) >= 2
    _no_secrets(exc)


def test_refused_refresh_token_is_an_auth_error(gmail_project, fake_gmail):
    fake_gmail.token_error = "invalid_grant"
    ch = _open(gmail_project)
    with pytest.raises(ChannelError) as caught:
        ch.send(outgoing())
    assert caught.value.kind is ErrorKind.AUTH
    assert caught.value.exit_code == 78
    assert "invalid_grant" in caught.value.message
    _no_secrets(caught.value)


def test_missing_token_file_says_how_to_get_one(tmp_path):
    write_project(
        tmp_path,
        '[channels.email]\nprovider = "gmail"\ncredentials = "nowhere.json"\n',
    )
    with pytest.raises(ChannelError) as caught:
        _open(tmp_path)
    assert caught.value.kind is ErrorKind.AUTH
    assert caught.value.exit_code == 78
    assert "nowhere.json" in caught.value.message
    assert "campaignctl auth gmail --channel email" in (caught.value.hint or "")


def test_unreachable_endpoint_is_transient(tmp_path, fake_gmail):
    closed_port = free_port()
    fake_gmail.write_token_file(tmp_path / "t.json", expired=False)
    write_project(
        tmp_path,
        f'[channels.email]\nprovider = "gmail"\ncredentials = "t.json"\n'
        f'api_endpoint = "http://127.0.0.1:{closed_port}"\n',
    )
    with pytest.raises(ChannelError) as caught:
        _open(tmp_path).send(outgoing())
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.maybe_sent is False


def _service_account_key(path: Path, token_uri: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "sunrise",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "sender@sunrise.iam.gserviceaccount.com",
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )
    )
    return path


def test_service_account_with_domain_wide_delegation(tmp_path, fake_gmail: FakeGmail):
    _service_account_key(tmp_path / "sa.json", fake_gmail.token_uri)
    write_project(
        tmp_path,
        f'[channels.email]\nprovider = "gmail"\nservice_account = "sa.json"\n'
        f'delegate = "ana@sunrise.example"\napi_endpoint = "{fake_gmail.url}"\n',
    )
    ch = _open(tmp_path)
    sent = ch.send(outgoing())
    assert fake_gmail.delegated_subjects == ["ana@sunrise.example"]
    assert fake_gmail.token_requests[0]["grant_type"].endswith("jwt-bearer")
    assert sent.provider_id in fake_gmail.messages


@pytest.mark.parametrize("reason", ["insufficientPermissions", "forbidden"])
def test_403_that_is_not_a_rate_limit_stops_the_channel(gmail_project, fake_gmail, reason):
    fake_gmail.fail_next(403, reason=reason, path="/send")
    with pytest.raises(ChannelError) as caught:
        _open(gmail_project).send(outgoing())
    assert caught.value.kind is ErrorKind.AUTH


def test_gmail_defaults_and_quota_warnings(tmp_path):
    from campaignctl.config import validate_text

    text = '[channels.email]\nprovider = "gmail"\n'
    cfg, problems = validate_text(text, tmp_path / "campaigns.toml")
    assert cfg is not None
    assert problems == []
    assert (cfg.channels["email"].daily_limit, cfg.channels["email"].per_second) == (500, 2.0)

    text += "daily_limit = 5000\nper_second = 10\n"
    _cfg, problems = validate_text(text, tmp_path / "campaigns.toml")
    assert [(p.path, p.severity, p.line) for p in problems] == [
        ("channels.email.daily_limit", "warning", 3),
        ("channels.email.per_second", "warning", 4),
    ]


def test_the_fake_serves_what_inbound_sync_needs(gmail_project, fake_gmail):
    """A reply and a bounce injected into the fake, read back through googleapiclient."""
    from email.message import EmailMessage

    ch = _open(gmail_project)
    first = outgoing()
    sent = ch.send(first)
    start = fake_gmail.history_id

    reply = EmailMessage()
    reply["From"] = "Juan <juan@example.com>"
    reply["To"] = "ana@sunrise.example"
    reply["Subject"] = "Re: Welcome, Juan!"
    reply["Message-ID"] = "<reply-1@example.com>"
    reply["In-Reply-To"] = first.rfc_message_id
    reply["References"] = first.rfc_message_id
    reply.set_content("Yes, call me tomorrow.\nUNSUBSCRIBE me from the rest though")
    got = fake_gmail.deliver(reply)
    assert got.thread_id == sent.thread_id

    users = ch._service.users()
    listed = users.messages().list(userId="me", q="in:inbox from:juan@example.com").execute()
    assert [m["id"] for m in listed["messages"]] == [got.id]
    full = users.messages().get(userId="me", id=got.id, format="full").execute()
    headers = {h["name"]: h["value"] for h in full["payload"]["headers"]}
    assert headers["In-Reply-To"] == first.rfc_message_id
    body = base64.urlsafe_b64decode(full["payload"]["body"]["data"])
    assert body.startswith(b"Yes, call me tomorrow.")
    history = (
        users.history()
        .list(userId="me", startHistoryId=str(start), historyTypes=["messageAdded"])
        .execute()
    )
    assert [h["messagesAdded"][0]["message"]["id"] for h in history["history"]] == [got.id]
    users.messages().modify(userId="me", id=got.id, body={"removeLabelIds": ["UNREAD"]}).execute()
    assert fake_gmail.messages[got.id].labels == ["INBOX"]
    assert users.getProfile(userId="me").execute()["historyId"] == str(fake_gmail.history_id)


def test_a_token_file_that_cannot_be_rewritten_does_not_fail_the_send(
    gmail_project, fake_gmail, caplog
):
    ch = _open(gmail_project)
    folder = gmail_project / "gmail-token.json"
    folder.unlink()
    folder.mkdir()  # os.replace onto a directory fails
    sent = ch.send(outgoing())
    assert sent.provider_id in fake_gmail.messages
    assert "cannot save the refreshed token" in caplog.text
    assert sorted(p.name for p in gmail_project.iterdir()) == ["campaigns.toml", "gmail-token.json"]
