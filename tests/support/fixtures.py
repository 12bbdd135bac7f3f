"""pytest fixtures: project folders, the CLI runner, the loopback fakes and projects on them.

Registered for every test by `tests/conftest.py`; the fakes' servers live in `tests/fakes/`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from campaignctl.cli import app
from tests.fakes.gmail import FakeGmail
from tests.fakes.smtp import FakeSmtp
from tests.fakes.twilio import FakeTwilio
from tests.support.project import MINIMAL_TOML, REPO, write_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding a small valid campaigns.toml."""
    (tmp_path / "campaigns.toml").write_text(MINIMAL_TOML)
    return tmp_path


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A copy of the repository's example campaign file and its templates."""
    shutil.copy(REPO / "campaigns.toml", tmp_path / "campaigns.toml")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run campaignctl in-process: cli("-C", folder, "check")."""
    runner = CliRunner()

    def run(*args: str | Path, input: str | None = None) -> Result:
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


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
    `smtputf8=False` for a relay without SMTPUTF8; `size_limit=N` for one that takes messages
    of at most N bytes (and says so: `SIZE N`)."""
    started: list[FakeSmtp] = []

    def start(
        *,
        security: str = "none",
        users: dict[str, str] | None = None,
        smtputf8: bool = True,
        size_limit: int | None = None,
    ) -> FakeSmtp:
        folder = tmp_path / f"smtp{len(started)}"
        folder.mkdir()
        fake = FakeSmtp(
            folder, security=security, users=users, smtputf8=smtputf8, size_limit=size_limit
        ).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


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
