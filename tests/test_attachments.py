"""Attachments on email steps (issue 12, item 8): paths inside the project, per-lead templates,
MIME parts that arrive intact over SMTP, in the outbox and through Gmail, the size limit, and
what `check`, `preview`, the message row and `explain` say about them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from campaignctl.attachments import Attachment, encoded_size
from campaignctl.channels.base import UNSENDABLE, ChannelError, ErrorKind, Outgoing
from campaignctl.channels.mime import email_bytes
from campaignctl.config import Sender
from campaignctl.store import Lead
from tests.fakes.gmail import FakeGmail
from tests.fakes.smtp import FakeSmtp
from tests.support import T0, Cli, add_leads, gmail_folder, row, write_project

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"  # every byte value, binary-safe

OUTBOX = '[channels.email]\nprovider = "outbox"\n'
SMS = '[channels.sms]\nprovider = "outbox"\nkind = "sms"\n'


def _campaign(attachments: list[str], channel: str = "email", extra: str = "") -> str:
    name = "{{ lead.first_name | default('there') }}"
    subject = f'subject = "Listings for {name}"\n' if channel == "email" else ""
    return (
        '[campaigns.promo]\nstatus = "active"\n\n[[campaigns.promo.steps]]\nname = "offer"\n'
        f'channel = "{channel}"\n{subject}'
        f'body = "Hi {name}, the brochure is attached. Reply STOP to opt out."\n'
        f"attachments = {json.dumps(attachments, ensure_ascii=False)}\n{extra}"
    )


def _project(folder: Path, attachments: list[str], channels: str = OUTBOX, **kw: str) -> Path:
    (folder / "files").mkdir(exist_ok=True)
    (folder / "files" / "brochure.pdf").write_bytes(PDF)
    return write_project(folder, channels, _campaign(attachments, **kw))


def _files(em: EmailMessage) -> dict[str, tuple[str, bytes]]:
    """filename -> (content type, decoded bytes) of each attachment."""
    out = {}
    for part in em.iter_attachments():
        assert isinstance(part, EmailMessage)
        name = part.get_filename()
        assert name is not None
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out[name] = (part.get_content_type(), payload)
    return out


def _eml(folder: Path, message_id: int) -> EmailMessage:
    em = message_from_bytes(
        (folder / "outbox" / f"{message_id}.eml").read_bytes(), policy=policy.default
    )
    assert isinstance(em, EmailMessage)
    return em


# ---------------------------------------------------------------- arriving intact


def test_outbox_eml_carries_the_file_and_the_claim_records_it(cli: Cli, tmp_path: Path) -> None:
    folder = _project(tmp_path, ["files/brochure.pdf"])
    (lead,) = add_leads(folder, {"email": "juan@example.com", "first_name": "Juan"})
    r = cli("-C", folder, "send")
    assert r.exit_code == 0, r.output
    msg = row(folder, "offer", lead)
    em = _eml(folder, msg.id or 0)
    assert em.get_content_type() == "multipart/mixed"
    assert _files(em) == {"brochure.pdf": ("application/pdf", PDF)}
    body = em.get_body(("plain",))
    assert body is not None
    assert "the brochure is attached" in body.get_content()
    # the claim records which files, never their bytes
    assert msg.attachments == [{"file": "files/brochure.pdf", "size": len(PDF)}]
    r = cli("-C", folder, "explain", "juan@example.com")
    assert r.exit_code == 0, r.output
    assert "attached files/brochure.pdf (10.0 KB)" in r.stdout
    # a path rendered per lead can carry the lead's data: erasure clears it with the rest
    assert cli("-C", folder, "leads", "delete", "juan@example.com", "--yes").exit_code == 0
    assert row(folder, "offer", lead).attachments is None


def test_smtp_delivers_the_file_intact_with_a_non_ascii_name(
    cli: Cli, tmp_path: Path, fake_smtp: Callable[..., FakeSmtp]
) -> None:
    relay = fake_smtp()
    name = "Folleto señor Ñandú — 2026.pdf"
    folder = _project(
        tmp_path,
        ["files/brochure.pdf", f"files/{name}"],
        channels=f'[channels.email]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {relay.port}\n'
        'security = "none"\n',
    )
    (folder / "files" / name).write_bytes(b"\x00\xff" * 5000)
    add_leads(folder, {"email": "juan@example.com", "first_name": "Juan"})
    r = cli("-C", folder, "send")
    assert r.exit_code == 0, r.output
    (got,) = relay.received
    em = message_from_bytes(got.data, policy=policy.default)
    assert isinstance(em, EmailMessage)
    assert _files(em) == {
        "brochure.pdf": ("application/pdf", PDF),
        name: ("application/pdf", b"\x00\xff" * 5000),
    }
    assert got.data.isascii(), "7-bit: the name is RFC 2231 encoded, the bytes base64"
    assert b"filename*=utf-8''Folleto%20se%C3%B1or" in got.data


def test_gmail_takes_a_large_attachment_through_the_upload_url(
    cli: Cli, tmp_path: Path, fake_gmail: FakeGmail
) -> None:
    folder = gmail_folder(tmp_path, fake_gmail)
    big = os.urandom(6 * 1024 * 1024)  # as `raw` in a JSON body, Gmail (and the fake) say 413
    (folder / "files").mkdir()
    (folder / "files" / "plans.zip").write_bytes(big)
    toml = folder / "campaigns.toml"
    toml.write_text(
        toml.read_text().replace(
            'template = "hello.md.j2"',
            'template = "hello.md.j2"\nattachments = ["files/plans.zip"]',
        )
    )
    (lead,) = add_leads(folder, {"email": "juan@example.com", "first_name": "Juan"})
    r = cli("-C", folder, "send")
    assert r.exit_code == 0, r.output
    (uploaded,) = fake_gmail.uploads
    (stored,) = fake_gmail.sent
    assert stored.raw == uploaded
    assert isinstance(stored.mime, EmailMessage)
    assert _files(stored.mime) == {"plans.zip": ("application/zip", big)}
    assert row(folder, "hello", lead).provider_id == stored.id


def test_a_message_without_attachments_still_goes_as_raw_json(
    cli: Cli, tmp_path: Path, fake_gmail: FakeGmail
) -> None:
    folder = gmail_folder(tmp_path, fake_gmail)
    add_leads(folder, {"email": "juan@example.com", "first_name": "Juan"})
    assert cli("-C", folder, "send").exit_code == 0
    assert len(fake_gmail.sent) == 1
    assert fake_gmail.uploads == []


# ---------------------------------------------------------------- per-lead paths


def test_a_templated_path_picks_each_leads_file(cli: Cli, tmp_path: Path) -> None:
    folder = _project(tmp_path, ["files/{{ lead.city | lower }}.pdf"])
    (folder / "files" / "makati.pdf").write_bytes(b"makati listings")
    (folder / "files" / "cebu.pdf").write_bytes(b"cebu listings")
    ana, ben = add_leads(
        folder,
        Lead(email="ana@example.com", first_name="Ana", attrs={"city": "Makati"}),
        Lead(email="ben@example.com", first_name="Ben", attrs={"city": "Cebu"}),
    )
    assert cli("-C", folder, "check").exit_code == 0
    r = cli("-C", folder, "send")
    assert r.exit_code == 0, r.output
    for lead, file in ((ana, "makati.pdf"), (ben, "cebu.pdf")):
        msg = row(folder, "offer", lead)
        assert _files(_eml(folder, msg.id or 0)) == {
            file: ("application/pdf", (folder / "files" / file).read_bytes())
        }
        size = (folder / "files" / file).stat().st_size
        assert msg.attachments == [{"file": f"files/{file}", "size": size}]


@pytest.mark.parametrize(
    ("city", "why"),
    [
        ("../../outside", "leads out of the campaign file's directory"),
        ("link", "leads out of the campaign file's directory"),
        ("missing", "attachment file 'files/missing.pdf' not found"),
        ("../.env", "is a hidden file"),
    ],
    ids=["dotdot", "symlink-out", "missing", "hidden"],
)
def test_a_per_lead_path_that_escapes_fails_that_message_only(
    cli: Cli, tmp_path: Path, city: str, why: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "outside.pdf").write_bytes(b"SECRET")
    folder = _project(project, ["files/{{ lead.city }}.pdf"])
    (folder / "files" / "Makati.pdf").write_bytes(b"makati listings")
    (folder / ".env.pdf").write_bytes(b"SECRET")
    (folder / "files" / "link.pdf").symlink_to(tmp_path / "outside.pdf")
    good, bad = add_leads(
        folder,
        Lead(email="ana@example.com", first_name="Ana", attrs={"city": "Makati"}),
        Lead(email="ben@example.com", first_name="Ben", attrs={"city": city}),
    )
    r = cli("-C", folder, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.promo.steps[0].attachments[0]: " in r.stdout
    assert why in r.stdout
    r = cli("-C", folder, "send")
    assert r.exit_code == 1, r.output  # a message failed
    assert row(folder, "offer", good).state == "sent"
    failed = row(folder, "offer", bad)
    assert (failed.state, failed.error_code) == ("failed", "render")
    assert why in (failed.error or "")
    assert b"SECRET" not in b"".join(p.read_bytes() for p in (folder / "outbox").iterdir())


# ---------------------------------------------------------------- check


def _secret(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(b"SECRET")
    return secret


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p, s: str(s), "must be relative to the campaign file's directory"),
        (lambda p, s: "../secret.pdf", "leads out of the campaign file's directory"),
        (lambda p, s: "files/../../secret.pdf", "leads out of the campaign file's directory"),
        (
            lambda p, s: (p / "files" / "link.pdf").symlink_to(s) or "files/link.pdf",
            "leads out of the campaign file's directory",
        ),
        (lambda p, s: "files/nothing.pdf", "attachment file 'files/nothing.pdf' not found"),
        (lambda p, s: ".env", "is a hidden file"),
        (lambda p, s: "campaignctl.db", "is a channel's credentials or the database"),
    ],
    ids=["absolute", "dotdot", "inner-dotdot", "symlink-out", "missing", "hidden", "database"],
)
def test_check_refuses_paths_outside_the_project_with_the_key_path(
    cli: Cli, tmp_path: Path, make: Callable[[Path, Path], str], why: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "files").mkdir()
    (project / ".env").write_text("SECRET=1\n")
    name = make(project, _secret(tmp_path))
    folder = _project(project, ["files/brochure.pdf", name])
    r = cli("-C", folder, "check")
    assert r.exit_code == 1, r.output
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("error:")]
    assert "campaigns.promo.steps[0].attachments[1]: " in line
    assert why in line
    assert "SECRET" not in r.output
    r = cli("-C", folder, "send")
    assert r.exit_code == 2
    assert "campaigns.promo.steps[0].attachments[1]" in r.stderr
    assert not (folder / "outbox").exists()


def test_an_sms_step_with_attachments_is_a_check_error(cli: Cli, tmp_path: Path) -> None:
    folder = _project(tmp_path, ["files/brochure.pdf"], channels=SMS, channel="sms")
    r = cli("-C", folder, "check")
    assert r.exit_code == 1, r.output
    assert (
        "campaigns.promo.steps[0].attachments: attachments are for email steps; "
        "sms messages carry none"
    ) in r.stdout


def test_check_errors_on_a_total_over_the_channels_limit(cli: Cli, tmp_path: Path) -> None:
    folder = _project(
        tmp_path,
        ["files/brochure.pdf", "files/plans.bin"],
        channels=OUTBOX + "max_message_size = 100000\n",
    )
    (folder / "files" / "plans.bin").write_bytes(b"x" * 70_000)  # 10 KB + 70 KB: ~107 KB encoded
    r = cli("-C", folder, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.promo.steps[0].attachments: the message for lead " in r.stdout
    assert "over channel email's limit of 97.7 KB" in r.stdout
    (folder / "files" / "plans.bin").write_bytes(b"x" * 40_000)
    assert cli("-C", folder, "check").exit_code == 0


# ---------------------------------------------------------------- the size limit at send time


def test_an_oversized_message_fails_permanently_with_a_hint(cli: Cli, tmp_path: Path) -> None:
    # 80 KB of file is under the 100 KB limit, but not after base64: the encoded size counts
    folder = _project(
        tmp_path, ["files/plans.bin"], channels=OUTBOX + "max_message_size = 100000\n"
    )
    (folder / "files" / "plans.bin").write_bytes(b"x" * 80_000)
    assert encoded_size(80_000) > 100_000
    (lead,) = add_leads(folder, {"email": "juan@example.com", "first_name": "Juan"})
    r = cli("-C", folder, "send")
    assert r.exit_code == 1, r.output
    msg = row(folder, "offer", lead)
    assert msg.state == "failed"
    assert msg.attempts == 1
    assert "after base64 encoding, over channel email's limit of 97.7 KB" in (msg.error or "")
    assert not list((folder / "outbox").glob("*.eml"))


def test_the_builder_refuses_an_oversized_file_before_reading_it(tmp_path: Path) -> None:
    missing = Attachment("files/huge.iso", tmp_path / "huge.iso", 30 * 1024 * 1024)
    msg = Outgoing(
        id=1,
        campaign="c",
        step="s",
        channel="email",
        kind="email",
        to="juan@example.com",
        text="hi",
        claimed_at=T0,
        subject="hi",
        attachments=(missing,),  # never read: it does not even exist
    )
    with pytest.raises(ChannelError) as exc:
        email_bytes(msg, Sender(name="Ana", email="ana@example.com"), max_size=25 * 1024 * 1024)
    assert (exc.value.kind, exc.value.code) == (ErrorKind.PERMANENT, UNSENDABLE)
    assert "limit of 25.0 MB" in exc.value.message
    assert exc.value.hint


# ---------------------------------------------------------------- preview


def test_preview_lists_the_attachments_with_sizes(cli: Cli, tmp_path: Path) -> None:
    folder = _project(tmp_path, ["files/brochure.pdf"])
    r = cli("-C", folder, "preview", "promo")
    assert r.exit_code == 0, r.output
    assert "# attachment: files/brochure.pdf (10.0 KB, application/pdf)" in r.stdout
    assert "# multipart/mixed: about " in r.stdout
    assert "OVER" not in r.stdout
    assert not (folder / "campaignctl.db").exists()


def test_a_gmail_message_over_25_mb_fails_for_good_and_nothing_is_uploaded(
    cli: Cli, tmp_path: Path, fake_gmail: FakeGmail
) -> None:
    folder = gmail_folder(tmp_path, fake_gmail)
    (folder / "files").mkdir()
    with (folder / "files" / "video.mp4").open("wb") as f:
        f.truncate(20 * 1024 * 1024)  # sparse: 20 MB is 26.7 MB after base64
    toml = folder / "campaigns.toml"
    toml.write_text(
        toml.read_text().replace(
            'template = "hello.md.j2"',
            'template = "hello.md.j2"\nattachments = ["files/video.mp4"]',
        )
    )
    juan, maria = add_leads(
        folder,
        {"email": "juan@example.com", "first_name": "Juan"},
        {"email": "maria@example.com", "first_name": "Maria"},
    )
    r = cli("-C", folder, "check")
    assert r.exit_code == 1
    assert "campaigns.welcome.steps[0].attachments: the message for lead " in r.stdout
    r = cli("-C", folder, "send")
    assert r.exit_code == 1, r.output
    for lead in (juan, maria):  # the circuit breaker does not count them: both are tried
        msg = row(folder, "hello", lead)
        assert (msg.state, msg.error_code) == ("failed", UNSENDABLE)
        assert "over channel email's limit of 25.0 MB" in (msg.error or "")
    assert fake_gmail.sent == []
    assert fake_gmail.uploads == []


def test_a_line_break_in_a_rendered_path_never_reaches_a_header(cli: Cli, tmp_path: Path) -> None:
    folder = _project(tmp_path, ["files/{{ lead.doc }}"])
    (folder / "files" / "a\nBcc: x@evil.example.pdf").write_bytes(b"x")
    good, bad = add_leads(
        folder,
        Lead(email="ana@example.com", first_name="Ana", attrs={"doc": "brochure.pdf"}),
        Lead(
            email="ben@example.com", first_name="Ben", attrs={"doc": "a\nBcc: x@evil.example.pdf"}
        ),
    )
    r = cli("-C", folder, "send")
    assert r.exit_code == 1, r.output
    assert row(folder, "offer", good).state == "sent"
    failed = row(folder, "offer", bad)
    assert failed.state == "failed"
    assert "contains a line break or control character" in (failed.error or "")
    assert b"Bcc" not in b"".join(p.read_bytes() for p in (folder / "outbox").iterdir())


def test_the_builder_refuses_a_file_name_with_a_line_break(tmp_path: Path) -> None:
    path = tmp_path / "a\r\nBcc: x@evil.example.pdf"
    path.write_bytes(b"x")
    msg = Outgoing(
        id=1,
        campaign="c",
        step="s",
        channel="email",
        kind="email",
        to="juan@example.com",
        text="hi",
        claimed_at=T0,
        subject="hi",
        attachments=(Attachment("files/x", path, 1),),
    )
    with pytest.raises(ChannelError) as exc:
        email_bytes(msg, Sender(name="Ana", email="ana@example.com"))
    assert (exc.value.kind, exc.value.code) == (ErrorKind.PERMANENT, UNSENDABLE)
    assert "line break" in exc.value.message


def test_a_reconciled_message_says_how_many_files_it_carried(tmp_path: Path) -> None:
    import random

    from campaignctl.engine import Engine
    from campaignctl.explain import explain
    from campaignctl.store import Store
    from campaignctl.store import messages as store_messages
    from tests.support import project

    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "brochure.pdf").write_bytes(PDF)
    cfg = project(tmp_path, OUTBOX + "\n" + _campaign(["files/brochure.pdf"]))
    store = Store.for_config(cfg)
    (lead,) = add_leads(store, {"email": "juan@example.com", "first_name": "Juan"})
    Engine(cfg, store).run_pass(T0, random.Random(1))
    with store.write() as s:  # as if the process died after the outbox wrote the file
        (msg,) = store_messages.of_lead(s, lead)
        w = store_messages.Writes()
        w.set(msg.id, T0, state="uncertain")
        w.flush(s)
    Engine(cfg, store).run_pass(T0 + timedelta(minutes=1), random.Random(1))
    found = explain(cfg, store, "juan@example.com", T0 + timedelta(minutes=2))
    texts = [x.text for x in found.lines]
    assert any(
        t.startswith("reconciled with the provider: the provider has it (a message with 1 attach")
        for t in texts
    ), texts
    assert any("attached files/brochure.pdf (10.0 KB)" in t for t in texts), texts
