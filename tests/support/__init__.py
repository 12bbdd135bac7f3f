"""What tests share, in one place: import it as `from tests.support import ...`.

- `project`: the project builder (`campaign_toml`, `write_project`, `project`, `MINIMAL_TOML`,
  projects on the fakes: `gmail_folder`, `twilio_folder`).
- `leads`: the lead adder (`add_leads`) and the store a project opens (`open_store`).
- `rows`: what the database and an outbox hold (`messages`, `rows`, `optouts`, ...).
- `clock`: `T0`, `days`, `utc`, and `travel` for `send` on the wall clock.
- `channels`: `ScriptedChannel`, `transient()`, `outgoing()`.
- `cli`: `Cli`, `status_steps`, `send_process`.
- `fixtures`: the pytest fixtures (`project`, `cli`, `fake_gmail`, `twilio_project`, ...),
  registered by `tests/conftest.py`; the fakes' servers are in `tests/fakes/`.
"""

from tests.support.channels import ScriptedChannel, outgoing, transient
from tests.support.cli import Cli, send_process, status_steps
from tests.support.clock import T0, days, travel, utc
from tests.support.leads import (
    JUAN,
    JUAN_PHONE,
    MARIA,
    MARIA_PHONE,
    add_leads,
    numbered,
    open_store,
)
from tests.support.project import (
    EMAIL_CAMPAIGN,
    MINIMAL_TOML,
    OUTBOX_CHANNELS,
    PUBLIC_DATA,
    REPO,
    SENDER,
    SMS_FROM,
    TEMPLATE_SID,
    TWILIO_CAMPAIGN,
    UNSUBSCRIBE_URL,
    WA_FROM,
    WELCOME_CAMPAIGN,
    campaign_toml,
    gmail_folder,
    project,
    twilio_folder,
    write_email_template,
    write_project,
)
from tests.support.rows import enrolments, messages, optouts, outbox_files, row, rows, sent_times

__all__ = [
    "EMAIL_CAMPAIGN",
    "JUAN",
    "JUAN_PHONE",
    "MARIA",
    "MARIA_PHONE",
    "MINIMAL_TOML",
    "OUTBOX_CHANNELS",
    "PUBLIC_DATA",
    "REPO",
    "SENDER",
    "SMS_FROM",
    "T0",
    "TEMPLATE_SID",
    "TWILIO_CAMPAIGN",
    "UNSUBSCRIBE_URL",
    "WA_FROM",
    "WELCOME_CAMPAIGN",
    "Cli",
    "ScriptedChannel",
    "add_leads",
    "campaign_toml",
    "days",
    "enrolments",
    "gmail_folder",
    "messages",
    "numbered",
    "open_store",
    "optouts",
    "outbox_files",
    "outgoing",
    "project",
    "row",
    "rows",
    "send_process",
    "sent_times",
    "status_steps",
    "transient",
    "travel",
    "twilio_folder",
    "utc",
    "write_email_template",
    "write_project",
]
