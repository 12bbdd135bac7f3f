"""`campaignctl send` end to end through the Gmail channel, against the loopback Gmail fake.

Each test checks both sides: what the fake received (the raw MIME, the thread, the token
requests) and what the database recorded (message rows, `status --format json`).
"""

from __future__ import annotations

import base64
import json
import stat
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlmodel import select

import campaignctl.channels.gmail as gmail
from campaignctl.store import Message
from tests.fakes.gmail import REFRESH_TOKEN, FakeGmail
from tests.support import (
    JUAN,
    MARIA,
    Cli,
    add_leads,
    enrolments,
    gmail_folder,
    open_store,
    row,
    rows,
    status_steps,
    travel,
    utc,
)


@pytest.fixture
def folder(tmp_path: Path, fake_gmail: FakeGmail) -> Path:
    return gmail_folder(tmp_path, fake_gmail)


def _send_bodies(fake: FakeGmail) -> list[dict[str, str]]:
    return [r.json() for r in fake.api_requests if r.path.endswith("/messages/send")]


def _raw(body: dict[str, str]) -> bytes:
    return base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))


def test_send_then_thread_step(cli: Cli, folder: Path, fake_gmail: FakeGmail) -> None:
    juan, maria = add_leads(folder, JUAN, MARIA)
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert "summary: sent 2, failed 0" in res.stdout

    assert len(fake_gmail.sent) == 2
    by_to = {m.to: m for m in fake_gmail.sent}
    for lead_id, lead in ((juan, JUAN), (maria, MARIA)):
        stored = by_to[lead["email"]]
        rec = row(folder, "hello", lead_id)
        assert (rec.state, rec.provider_id, rec.thread_id) == ("sent", stored.id, stored.thread_id)
        assert rec.message_id
        assert stored.header("Message-ID") == rec.message_id
        assert rec.recipient == lead["email"]
        mime = stored.mime
        assert isinstance(mime, EmailMessage)
        assert mime.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in mime.iter_parts()] == ["text/plain", "text/html"]
        assert mime["From"] == "Ana Cruz <ana@sunrise.example>"
        assert mime["Subject"] == f"Welcome, {lead['first_name']}!"
        assert mime["List-Unsubscribe"] == (
            "<https://sunrise.example/unsubscribe>, "
            "<mailto:ana@sunrise.example?subject=unsubscribe>"
        )
        assert "In-Reply-To" not in mime
        html = mime.get_body(("html",))
        assert html is not None
        assert f"<strong>{lead['first_name']}</strong>" in html.get_content()
        assert b"12 Ayala Ave, Makati City" in stored.raw
    assert all("threadId" not in b for b in _send_bodies(fake_gmail))
    follow = row(folder, "follow-up", juan)
    assert follow.state == "pending"
    assert utc(follow.due_at) - utc(row(folder, "hello", juan).sent_at) == timedelta(days=2)

    # nothing more is due today
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert len(fake_gmail.sent) == 2

    travel(folder, timedelta(days=2))
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert len(fake_gmail.sent) == 4
    bodies = _send_bodies(fake_gmail)[2:]
    for lead_id, lead in ((juan, JUAN), (maria, MARIA)):
        first, second = row(folder, "hello", lead_id), row(folder, "follow-up", lead_id)
        assert second.state == "sent"
        stored = fake_gmail.messages[str(second.provider_id)]
        (request,) = [b for b in bodies if _raw(b) == stored.raw]
        assert request["threadId"] == first.thread_id
        assert stored.header("Subject") == f"Re: Welcome, {lead['first_name']}!"
        assert stored.header("In-Reply-To") == first.message_id
        assert stored.header("References") == first.message_id
        assert stored.header("Message-ID") == second.message_id != first.message_id
        assert stored.mime.get_content_type() == "text/plain"  # a text body: no HTML part
        # the fake threads only as Gmail does (subject and references agree)
        assert stored.thread_id == first.thread_id == second.thread_id
    steps = status_steps(cli, folder)
    assert (steps["hello"]["sent"], steps["follow-up"]["sent"]) == (2, 2)
    assert {e[0] for e in enrolments(folder).values()} == {"completed"}


def test_token_refreshed_mid_run_is_written_back_0600(
    cli: Cli, tmp_path: Path, fake_gmail: FakeGmail
) -> None:
    folder = gmail_folder(tmp_path, fake_gmail, expired=False)
    token_file = folder / "gmail-token.json"
    token_file.chmod(0o644)  # the write-back must tighten it
    first_token = json.loads(token_file.read_text())["token"]
    fake_gmail.token_uses = 1  # the token expires after one request: refreshed mid-run
    add_leads(folder, JUAN, MARIA, {"email": "ines@example.com", "first_name": "Ines"})

    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert len(fake_gmail.sent) == 3  # each once: the 401 before a refresh sent nothing
    assert len({m.header("Message-ID") for m in fake_gmail.sent}) == 3
    grants = [r["grant_type"] for r in fake_gmail.token_requests]
    assert grants == ["refresh_token", "refresh_token"]  # before the 2nd and the 3rd send
    saved = json.loads(token_file.read_text())
    assert saved["token"] != first_token
    assert saved["token"] in fake_gmail.valid_tokens
    assert saved["refresh_token"] == REFRESH_TOKEN
    assert saved["token_uri"] == fake_gmail.token_uri
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert {m.state for m in rows(folder)} == {"sent", "pending"}  # follow-ups wait
    assert REFRESH_TOKEN not in res.stdout + res.stderr


def test_429_goes_back_to_pending_and_is_sent_on_a_later_pass(
    cli: Cli, folder: Path, fake_gmail: FakeGmail
) -> None:
    juan, maria = add_leads(folder, JUAN, MARIA)
    fake_gmail.fail_next(429, path="/messages/send", retry_after=150)
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert [m.to for m in fake_gmail.sent] == ["maria@example.com"]
    held = row(folder, "hello", juan)
    assert (held.state, held.attempts, held.error_code) == ("pending", 1, "429")
    assert held.claimed_by is None
    # backoff: retry_backoff (1 min) plus up to as much jitter, Retry-After (150 s) as a floor
    assert utc(held.due_at) - utc(held.claimed_at) == timedelta(seconds=150)
    assert row(folder, "hello", maria).state == "sent"

    res = cli("-C", folder, "send")  # too early: nothing goes
    assert res.exit_code == 0, res.stderr
    assert len(fake_gmail.sent) == 1

    travel(folder, timedelta(seconds=151))
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert [m.to for m in fake_gmail.sent] == [
        "maria@example.com",
        "juan@example.com",
    ]
    done = row(folder, "hello", juan)
    assert (done.state, done.attempts, done.error_code) == ("sent", 2, None)
    assert done.provider_id == fake_gmail.sent[1].id
    assert done.message_id == fake_gmail.sent[1].header("Message-ID")


def test_only_429s_exit_75(cli: Cli, folder: Path, fake_gmail: FakeGmail) -> None:
    (juan,) = add_leads(folder, JUAN)
    fake_gmail.fail_next(429, path="/messages/send")
    res = cli("-C", folder, "send")
    assert res.exit_code == 75
    assert "temporary provider error" in res.stderr
    assert row(folder, "hello", juan).state == "pending"


def test_invalid_recipient_fails_with_the_code_while_others_go(
    cli: Cli, folder: Path, fake_gmail: FakeGmail
) -> None:
    bad, maria = add_leads(folder, {"email": "juan at example", "first_name": "Juan"}, MARIA)
    res = cli("-C", folder, "send")
    assert res.exit_code == 1
    assert "summary: sent 1, failed 1" in res.stdout
    assert "juan at example" in res.stderr
    assert "Invalid To header" in res.stderr
    failed = row(folder, "hello", bad)
    assert (failed.state, failed.error_code) == ("failed", "400")
    assert "Invalid To header" in (failed.error or "")
    assert enrolments(folder)[bad] == ("stopped", "step hello failed")
    assert row(folder, "hello", maria).state == "sent"
    assert [m.to for m in fake_gmail.sent] == ["maria@example.com"]
    steps = status_steps(cli, folder)
    assert (steps["hello"]["sent"], steps["hello"]["failed"]) == (1, 1)


def test_401_exits_78_with_the_auth_hint_and_leaves_the_message_pending(
    cli: Cli, folder: Path, fake_gmail: FakeGmail
) -> None:
    (juan,) = add_leads(folder, JUAN)
    fake_gmail.reject_tokens = True
    res = cli("-C", folder, "send")
    assert res.exit_code == 78
    assert "campaignctl auth gmail --channel email" in res.stderr
    for secret in (REFRESH_TOKEN, "ya29."):
        assert secret not in res.stdout + res.stderr
    untouched = row(folder, "hello", juan)
    assert (untouched.state, untouched.attempts, untouched.claimed_by) == ("pending", 0, None)
    assert untouched.error_code is None
    assert fake_gmail.sent == []
    assert status_steps(cli, folder)["hello"]["pending"] == 1

    fake_gmail.reject_tokens = False  # the user ran `campaignctl auth gmail`
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    assert row(folder, "hello", juan).state == "sent"
    assert len(fake_gmail.sent) == 1


def test_raw_is_base64url_of_the_stored_message(cli: Cli, folder: Path, fake_gmail: FakeGmail):
    (juan,) = add_leads(folder, JUAN)
    assert cli("-C", folder, "send").exit_code == 0
    (body,) = _send_bodies(fake_gmail)
    raw = _raw(body)
    assert raw == fake_gmail.sent[0].raw
    assert f"Message-ID: {row(folder, 'hello', juan).message_id}".encode() in raw


def test_5xx_may_have_sent_it_so_it_is_reconciled_before_the_retry(
    cli: Cli, folder: Path, fake_gmail: FakeGmail
) -> None:
    (juan,) = add_leads(folder, JUAN)
    fake_gmail.fail_next(503, path="/messages/send")
    res = cli("-C", folder, "send")
    assert res.exit_code == 75
    unsure = row(folder, "hello", juan)
    assert (unsure.state, unsure.error_code) == ("uncertain", "503")
    first_id = unsure.message_id

    res = cli("-C", folder, "send")  # asks Gmail first; the backoff still holds after that
    assert res.exit_code == 0, res.stderr
    assert f"reconciled message {unsure.id}: not_sent" in res.stdout
    searches = [r.arg("q") for r in fake_gmail.api_requests if r.method == "GET"]
    assert searches == [f"rfc822msgid:{str(first_id).strip('<>')}"]
    waiting = row(folder, "hello", juan)
    assert waiting.state == "pending"
    assert utc(waiting.due_at) == utc(unsure.due_at)
    assert fake_gmail.sent == []

    travel(folder, utc(waiting.due_at) - utc(waiting.claimed_at))
    assert cli("-C", folder, "send").exit_code == 0
    (sent,) = fake_gmail.sent
    done = row(folder, "hello", juan)
    assert (done.state, done.provider_id, done.attempts) == ("sent", sent.id, 2)


@pytest.mark.parametrize("query_chars", [None, 300])
def test_many_uncertain_emails_are_reconciled_with_one_search_and_new_ones_still_go(
    cli: Cli,
    folder: Path,
    fake_gmail: FakeGmail,
    monkeypatch: pytest.MonkeyPatch,
    query_chars: int | None,
) -> None:
    """issue 9 #10 for Gmail: one `rfc822msgid:` search per uncertain message became one search
    for all of them (in chunks of at most RECONCILE_QUERY_CHARS), and one batch request reads
    the Message-ID of those found."""
    if query_chars is not None:
        monkeypatch.setattr(gmail, "RECONCILE_QUERY_CHARS", query_chars, raising=False)
    leads = [{"email": f"l{i}@example.com", "first_name": f"N{i}"} for i in range(14)]
    ids = add_leads(folder, *leads[:12])
    assert cli("-C", folder, "send").exit_code == 0
    assert len(fake_gmail.sent) == 12
    # every outcome was lost, as after a kill mid-batch; 4 of the 12 never reached Gmail
    lost = {m.to for m in fake_gmail.sent[::3]}
    reached = {m.to: m for m in fake_gmail.sent if m.to not in lost}
    for m in [m for m in fake_gmail.sent if m.to in lost]:
        del fake_gmail.messages[m.id]
    store = open_store(folder)
    try:
        with store.write() as s:
            for msg in s.exec(select(Message).where(Message.step == "hello")):
                msg.state, msg.provider_id, msg.thread_id, msg.sent_at = (
                    "uncertain",
                    None,
                    None,
                    None,
                )
                s.add(msg)
    finally:
        store.close()
    lost_ids = {lead_id: row(folder, "hello", lead_id).message_id for lead_id in ids}
    new = add_leads(folder, *leads[12:])
    fake_gmail.http.requests.clear()

    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    searches = [r.arg("q") or "" for r in fake_gmail.api_requests if r.method == "GET"]
    if query_chars is None:
        assert len(searches) == 1  # not one per uncertain message
        assert len(fake_gmail.batch_requests) == 1  # one read of the 8 found, batched
    else:
        assert 1 < len(searches) < 12
        assert all(len(q) <= query_chars for q in searches)
        assert len(fake_gmail.batch_requests) == len(searches)
    assert sorted(q for s in searches for q in s.strip("{}").split()) == sorted(
        f"rfc822msgid:{str(i).strip('<>')}" for i in lost_ids.values()
    )
    reads = fake_gmail.batched
    assert len(reads) == len(reached) == 8
    assert {r.arg("format") for r in reads} == {"metadata"}
    for lead_id, lead in zip(ids, leads, strict=False):
        rec = row(folder, "hello", lead_id)
        assert rec.state == "sent"
        if lead["email"] in reached:  # settled as sent, with Gmail's id and thread
            got = reached[lead["email"]]
            assert (rec.provider_id, rec.thread_id) == (got.id, got.thread_id)
            assert rec.message_id == lost_ids[lead_id]
            assert rec.reason == "reconciled: the provider has it"
        else:  # Gmail never got it: sent again in the same run, under a new Message-ID
            assert rec.message_id != lost_ids[lead_id]
            assert rec.attempts == 2
    assert {row(folder, "hello", i).state for i in new} == {"sent"}  # new sends in the same run
    tos = [m.to for m in fake_gmail.sent]
    assert len(tos) == len(set(tos)) == 14  # nothing sent twice
