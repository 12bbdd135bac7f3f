"""Shared fixtures: a project folder with a campaign file, and a CLI runner pointed at it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from campaignctl.cli import app

REPO = Path(__file__).resolve().parent.parent
# Copies of ../shared/data/public, so the tests run from any clone.
PUBLIC_DATA = REPO / "tests" / "data" / "public"

MINIMAL_TOML = """\
[settings]
timezone = "Asia/Manila"
default_region = "PH"

[sender]
name = "Ana Cruz"
email = "ana@sunrise.example"
postal_address = "12 Ayala Ave, Makati City"

[channels.email]
provider = "outbox"
daily_limit = 100

[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 50

[campaigns.welcome]
status = "active"
audience = "status == 'new'"

[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Hello {{ lead.first_name | default('there') }}"
body = "Hi {{ lead.first_name | default('there') }}!"

[[campaigns.welcome.steps]]
name = "nudge"
channel = "sms"
delay = "2d"
body = "Hi {{ lead.first_name | default('there') }}, reply STOP to opt out."
"""


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


# the loopback provider fakes (fake_gmail, fake_twilio, fake_smtp, gmail_project, ...)
pytest_plugins = ["tests.fakes.fixtures"]
