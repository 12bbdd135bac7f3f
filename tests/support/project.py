"""The project builder: a campaigns.toml made of the standard settings and sender, then sections.

`campaign_toml()` is the text, `write_project()` writes it into a folder, `project()` also loads
it. `MINIMAL_TOML` (outbox channels, the `welcome` campaign) and the provider projects used by
the end-to-end tests are built with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from campaignctl.config import Config, load
from tests.fakes.gmail import FakeGmail

REPO = Path(__file__).resolve().parent.parent.parent
# Copies of ../shared/data/public, so the tests run from any clone.
PUBLIC_DATA = REPO / "tests" / "data" / "public"

SENDER = """\
[sender]
name = "Ana Cruz"
email = "ana@sunrise.example"
postal_address = "12 Ayala Ave, Makati City"
"""
UNSUBSCRIBE_URL = "https://sunrise.example/unsubscribe"


def campaign_toml(
    *sections: str,
    tz: str = "Asia/Manila",
    region: str | None = "PH",
    database: str | None = None,
    unsubscribe_url: str | None = None,
) -> str:
    """[settings] and [sender] (with the overrides given), then each section after a blank line."""
    text = "[settings]\n"
    if database is not None:
        text += f'database = "{database}"\n'
    text += f'timezone = "{tz}"\n'
    if region is not None:
        text += f'default_region = "{region}"\n'
    text += "\n" + SENDER
    if unsubscribe_url is not None:
        text += f'\nunsubscribe_url = "{unsubscribe_url}"\n'
    return text + "".join("\n" + section for section in sections)


def write_project(folder: Path, channels: str = "", campaigns: str = "", **overrides: Any) -> Path:
    """A campaigns.toml in `folder`: the standard sender (with an unsubscribe URL for
    List-Unsubscribe), `channels` and `campaigns`; `overrides` go to `campaign_toml()`."""
    overrides.setdefault("unsubscribe_url", UNSUBSCRIBE_URL)
    (folder / "campaigns.toml").write_text(campaign_toml(channels, campaigns, **overrides))
    return folder


def project(tmp_path: Path, body: str, tz: str = "UTC") -> Config:
    """Write a campaign file (settings and sender, then `body`) and load it."""
    (tmp_path / "campaigns.toml").write_text(campaign_toml(tz=tz, region=None) + body)
    return load(tmp_path / "campaigns.toml")


# ---------------------------------------------------------------- the minimal project

OUTBOX_CHANNELS = """\
[channels.email]
provider = "outbox"
daily_limit = 100

[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 50
"""
WELCOME_CAMPAIGN = """\
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
MINIMAL_TOML = campaign_toml(OUTBOX_CHANNELS, WELCOME_CAMPAIGN)


# ---------------------------------------------------------------- projects on the fakes

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
SMS_FROM = "+15005550006"
WA_FROM = "whatsapp:+14155238886"


def twilio_folder(folder: Path, stop_on: str = "") -> Path:
    """The twilio_project folder plus a campaign: SMS, SMS a day later, a WhatsApp template."""
    with (folder / "campaigns.toml").open("a") as f:
        f.write(TWILIO_CAMPAIGN.replace("STOP_ON", stop_on))
    return folder
