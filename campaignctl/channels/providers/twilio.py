"""`provider = "twilio"`: its keys, how a channel's kind is told, and `campaignctl auth twilio`.

The adapter (and the Twilio SDK) is `campaignctl.channels.twilio`, imported by `open` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from campaignctl.channels.registry import Auth, Problem, Provider
from campaignctl.config import ChannelBase, Duration

if TYPE_CHECKING:
    from campaignctl.channels.base import Channel, Received
    from campaignctl.classify import Inbound, Known
    from campaignctl.config import Config


class TwilioChannel(ChannelBase):
    provider: Literal["twilio"]
    from_: str | None = Field(default=None, alias="from")
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    api_base: str | None = None
    # names of the environment variables holding the credentials (never the values)
    account_sid_env: str = "TWILIO_ACCOUNT_SID"
    auth_token_env: str = "TWILIO_AUTH_TOKEN"
    api_key_env: str = "TWILIO_API_KEY"
    api_secret_env: str = "TWILIO_API_SECRET"
    timeout: Duration = timedelta(seconds=30)


def _kind_of(ch: TwilioChannel) -> str | None:
    return "whatsapp" if (ch.from_ or "").startswith("whatsapp:") else None


def _problems(ch: TwilioChannel) -> Iterator[Problem]:
    if not (ch.from_ or ch.messaging_service_sid):
        yield "from", "set 'from' (a number) or 'messaging_service_sid'", "error"


def _environment_problems(cfg: Config, name: str, ch: TwilioChannel) -> Iterator[Problem]:
    """With `[server]`, Twilio's webhooks (delivery statuses, STOP and replies) are verified
    with the channel's auth token: without it `serve` refuses them (403) and they are lost,
    even when the channel sends with an API key."""
    import os

    if cfg.server is not None and not os.environ.get(ch.auth_token_env, "").strip():
        yield (
            "auth_token_env",
            f"environment variable {ch.auth_token_env} is not set: `serve` cannot verify "
            "Twilio's webhooks for this channel (delivery statuses, STOP, replies) and "
            "refuses them; set it where `serve` runs",
            "warning",
        )


def _sender(ch: TwilioChannel) -> str:
    return ch.from_ or f"messaging service {ch.messaging_service_sid}"


def _classify(
    cfg: Config, channel: str, r: Received, known: Known, now: datetime
) -> Inbound | None:
    from campaignctl.classify import classify_twilio

    if r.resource is None:
        return None
    return classify_twilio(r.resource, channel=channel, known=known, now=now)


def _open(cfg: Config, name: str) -> Channel:
    from campaignctl.channels.twilio import open as open_twilio

    return open_twilio(cfg, name)


def _auth(cfg: Config, name: str, values: Mapping[str, Any], say: Callable[[str], None]) -> None:
    from campaignctl.channels.twilio import verify
    from campaignctl.errors import CampaignctlError, ExitCode

    info = verify(cfg, name)
    say(
        f"twilio channel {name!r}: account {info.masked_sid} {info.friendly_name!r} "
        f"({info.type or 'unknown type'}), status {info.status}"
    )
    if info.status != "active":
        err = CampaignctlError(
            f"twilio channel {name!r}: the account is {info.status}, it cannot send",
            "check the account in the Twilio console",
        )
        err.exit_code = ExitCode.FAILED
        raise err


AUTH = Auth(
    help="Verify the Twilio credentials in the environment by fetching the account.",
    run=_auth,
    channel_help="Twilio channel to verify (default: the first twilio channel).",
)


PROVIDER = Provider(
    name="twilio",
    config=TwilioChannel,
    kinds=("sms", "whatsapp"),
    open=_open,
    classify=_classify,
    kind_of=_kind_of,
    default_kind="sms",
    problems=_problems,
    environment_problems=_environment_problems,
    sender=_sender,
    auth=AUTH,
)
