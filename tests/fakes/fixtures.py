"""pytest fixtures around the loopback fakes, and project folders whose channels use them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaignctl.channels.base import Outgoing
from tests.conftest import MINIMAL_TOML
from tests.fakes.gmail import FakeGmail
from tests.fakes.smtp import FakeSmtp
from tests.fakes.twilio import FakeTwilio

# the shared project's [settings] and [sender], plus an unsubscribe URL for List-Unsubscribe
SENDER_TOML = (
    MINIMAL_TOML.split("\n[channels.")[0]
    + '\nunsubscribe_url = "https://sunrise.example/unsubscribe"\n'
)


@pytest.fixture
def fake_gmail() -> Iterator[FakeGmail]:
    """A running fake Gmail API + token endpoint; `.url` is the channel's api_endpoint."""
    fake = FakeGmail().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    """A running fake Twilio API; TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN point at it."""
    fake = FakeTwilio().start()
    for var in ("TWILIO_API_KEY", "TWILIO_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    for var, value in fake.env().items():
        monkeypatch.setenv(var, value)
    yield fake
    fake.stop()


@pytest.fixture
def fake_smtp(tmp_path: Path) -> Iterator[Callable[..., FakeSmtp]]:
    """Start an aiosmtpd fake: fake_smtp(security="starttls", users={"ana": "pw"});
    `smtputf8=False` for a relay without SMTPUTF8."""
    started: list[FakeSmtp] = []

    def start(
        *, security: str = "none", users: dict[str, str] | None = None, smtputf8: bool = True
    ) -> FakeSmtp:
        folder = tmp_path / f"smtp{len(started)}"
        folder.mkdir()
        fake = FakeSmtp(folder, security=security, users=users, smtputf8=smtputf8).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


def write_project(folder: Path, channels: str, campaigns: str = "") -> Path:
    """A campaigns.toml in `folder` with the standard sender, `channels` and `campaigns`."""
    (folder / "campaigns.toml").write_text(SENDER_TOML + "\n" + channels + "\n" + campaigns)
    return folder


@pytest.fixture
def gmail_project(tmp_path: Path, fake_gmail: FakeGmail) -> Path:
    """A folder whose [channels.email] is Gmail at the fake, with an expired token file."""
    fake_gmail.write_token_file(tmp_path / "gmail-token.json")
    return write_project(
        tmp_path,
        f"""\
[channels.email]
provider = "gmail"
credentials = "gmail-token.json"
api_endpoint = "{fake_gmail.url}"
daily_limit = 450
""",
    )


@pytest.fixture
def twilio_project(tmp_path: Path, fake_twilio: FakeTwilio) -> Path:
    """A folder with [channels.sms] and [channels.whatsapp] on Twilio at the fake."""
    return write_project(
        tmp_path,
        f"""\
[channels.sms]
provider = "twilio"
from = "+15005550006"
api_base = "{fake_twilio.url}"
status_callback = "https://sunrise.example/twilio/status"

[channels.whatsapp]
provider = "twilio"
from = "whatsapp:+14155238886"
api_base = "{fake_twilio.url}"
""",
    )


def outgoing(**overrides: object) -> Outgoing:
    """An email Outgoing as the engine would hand it over (override any field)."""
    from campaignctl.channels.mime import new_message_id

    fields: dict[str, object] = {
        "id": 1,
        "campaign": "welcome",
        "step": "hello",
        "channel": "email",
        "kind": "email",
        "to": "juan@example.com",
        "text": "Hi Juan!\n\n-- \nAna Cruz, 12 Ayala Ave, Makati City",
        "html": "<p>Hi Juan!</p>",
        "subject": "Welcome, Juan!",
        "claimed_at": datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
        "rfc_message_id": new_message_id("ana@sunrise.example"),
    }
    fields.update(overrides)
    return Outgoing(**fields)  # type: ignore[arg-type]
