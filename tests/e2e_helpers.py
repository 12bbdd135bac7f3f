"""Helpers for the end-to-end send tests: leads, rows, time travel and `send` as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from typer.testing import Result

from campaignctl.config import load
from campaignctl.store import Enrolment, Lead, Message, OptOut, Store
from tests.conftest import REPO
from tests.fakes.fixtures import write_project
from tests.fakes.gmail import FakeGmail

Cli = Callable[..., Result]


def open_store(folder: Path) -> Store:
    """The project's database, as `send` opens it."""
    return Store.for_config(load(folder / "campaigns.toml"))


def add_leads(folder: Path, *leads: dict[str, Any]) -> list[int]:
    """Leads written through the store (each a dict of Lead fields); their ids in order."""
    store = open_store(folder)
    try:
        with store.write() as s:
            rows = [Lead(**fields) for fields in leads]
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows if r.id is not None]
    finally:
        store.close()


def rows(folder: Path) -> list[Message]:
    """Every message row, by id."""
    store = open_store(folder)
    try:
        with store.read() as s:
            return list(s.exec(select(Message).order_by(col(Message.id))))
    finally:
        store.close()


def row(folder: Path, step: str, lead_id: int) -> Message:
    """The message of `step` for `lead_id`."""
    (found,) = [m for m in rows(folder) if m.step == step and m.lead_id == lead_id]
    return found


def optouts(folder: Path) -> list[tuple[int, str, str]]:
    store = open_store(folder)
    try:
        with store.read() as s:
            return [(o.lead_id, o.channel, o.source) for o in s.exec(select(OptOut))]
    finally:
        store.close()


def enrolments(folder: Path) -> dict[int, tuple[str, str | None]]:
    store = open_store(folder)
    try:
        with store.read() as s:
            return {e.lead_id: (e.state, e.reason) for e in s.exec(select(Enrolment))}
    finally:
        store.close()


def travel(folder: Path, by: timedelta) -> None:
    """Let `by` pass for the pending messages: their due times move that much earlier.

    `send` runs on the wall clock; moving what waits into the past is the same as waiting.
    """
    store = open_store(folder)
    try:
        with store.write() as s:
            for m in s.exec(select(Message).where(Message.state == "pending")):
                m.due_at = m.due_at - by
                s.add(m)
    finally:
        store.close()


def status_steps(cli: Cli, folder: Path) -> dict[str, dict[str, Any]]:
    """`status --format json`, as {step name: its counts} over every campaign."""
    res = cli("-C", folder, "status", "--format", "json")
    assert res.exit_code == 0, res.stderr
    return {s["name"]: s for c in json.loads(res.stdout)["campaigns"] for s in c["steps"]}


def utc(t: datetime | None) -> datetime:
    assert t is not None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def send_process(folder: Path, *args: str) -> subprocess.Popen[str]:
    """A real `campaignctl send` process (the environment as it is now: credentials included)."""
    return subprocess.Popen(
        [sys.executable, "-m", "campaignctl", "-C", str(folder), "send", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---------------------------------------------------------------- projects

EMAIL_CAMPAIGN = """\
[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Welcome, {{ lead.first_name }}!"
template = "hello.md.j2"

[[campaigns.welcome.steps]]
name = "follow-up"
channel = "email"
delay = "2d"
thread = true
body = "Just checking you saw my note, {{ lead.first_name }}."
"""
JUAN = {"email": "juan@example.com", "first_name": "Juan"}
MARIA = {"email": "maria@example.com", "first_name": "Maria"}


def write_email_template(folder: Path) -> None:
    """The first step's Markdown template (so the email has an HTML part)."""
    (folder / "hello.md.j2").write_text("Hi **{{ lead.first_name }}**, Ana from Sunrise here.\n")


def gmail_folder(folder: Path, fake: FakeGmail, *, expired: bool = True) -> Path:
    """A project on the Gmail fake (fast pacing: the tests do not wait for 2/s)."""
    fake.write_token_file(folder / "gmail-token.json", expired=expired)
    write_email_template(folder)
    return write_project(
        folder,
        f"""\
[channels.email]
provider = "gmail"
credentials = "gmail-token.json"
api_endpoint = "{fake.url}"
per_second = 1000
""",
        EMAIL_CAMPAIGN,
    )


TEMPLATE_SID = "HX0123456789abcdef0123456789abcdef"
TWILIO_CAMPAIGN = """
[campaigns.texts]
status = "active"
STOP_ON

[[campaigns.texts.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name }}, Ana from Sunrise here. Reply STOP to opt out."

[[campaigns.texts.steps]]
name = "nudge"
channel = "sms"
delay = "1d"
body = "Still looking for a home, {{ lead.first_name }}?"

[[campaigns.texts.steps]]
name = "card"
channel = "whatsapp"
delay = "1d"
content_sid = "TEMPLATE_SID"
content_variables = { 1 = "{{ lead.first_name }}", 2 = "Makati" }
""".replace("TEMPLATE_SID", TEMPLATE_SID)
JUAN_PHONE = {"phone": "+639171234567", "first_name": "Juan"}
MARIA_PHONE = {"phone": "+639171234568", "first_name": "Maria"}
SMS_FROM = "+15005550006"
WA_FROM = "whatsapp:+14155238886"


def twilio_folder(folder: Path, stop_on: str = "") -> Path:
    """The twilio_project folder plus a campaign: SMS, SMS a day later, a WhatsApp template."""
    with (folder / "campaigns.toml").open("a") as f:
        f.write(TWILIO_CAMPAIGN.replace("STOP_ON", stop_on))
    return folder
