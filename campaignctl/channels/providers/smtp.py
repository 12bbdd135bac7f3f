"""`provider = "smtp"`: its keys. The adapter (smtplib) is `campaignctl.channels.smtp`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import PositiveInt

from campaignctl.attachments import DEFAULT_MAX_MESSAGE_SIZE
from campaignctl.channels.registry import Problem, Provider
from campaignctl.config import ChannelBase, Duration

if TYPE_CHECKING:
    from campaignctl.channels.base import Channel
    from campaignctl.config import Config


class SmtpChannel(ChannelBase):
    provider: Literal["smtp"]
    host: str
    port: PositiveInt | None = None
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    ca_file: str | None = None  # extra CA bundle to trust (a private relay's certificate)
    timeout: Duration = timedelta(seconds=30)
    #: bytes one whole message may take after base64 (attachments): over it, the message fails
    max_message_size: PositiveInt = DEFAULT_MAX_MESSAGE_SIZE


def _problems(ch: SmtpChannel) -> Iterator[Problem]:
    if ch.username and not ch.password_env:
        yield (
            "password_env",
            "'username' needs 'password_env' (the name of the variable holding the password)",
            "error",
        )


def _open(cfg: Config, name: str) -> Channel:
    from campaignctl.channels.smtp import open as open_smtp

    return open_smtp(cfg, name)


PROVIDER = Provider(
    name="smtp",
    config=SmtpChannel,
    kinds=("email",),
    open=_open,
    cannot_read="SMTP cannot read replies (IMAP is not supported yet): "
    "record opt-outs with `campaignctl leads optout`",
    problems=_problems,
)
