"""`provider = "gmail"`: its keys, its limits, and `campaignctl auth gmail`.

The adapter (and the Google client libraries) is `campaignctl.channels.gmail`, imported by
`open` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import PositiveInt

from campaignctl.channels.registry import Auth, AuthOption, Problem, Provider
from campaignctl.config import ChannelBase, Duration, PerSecond

if TYPE_CHECKING:
    from campaignctl.channels.base import Channel, Received
    from campaignctl.classify import Inbound, Known
    from campaignctl.config import Config

#: Gmail's sending limits: ~500 a day on a consumer account (2,000 on Workspace, 500 on trial);
#: messages.send costs 100 of the 15,000 quota units a user may spend per minute (2.5/s).
GMAIL_DEFAULT_DAILY = 500
GMAIL_WORKSPACE_DAILY = 2000
GMAIL_MAX_PER_SECOND = 2.5


class GmailChannel(ChannelBase):
    provider: Literal["gmail"]
    daily_limit: PositiveInt | None = GMAIL_DEFAULT_DAILY
    per_second: PerSecond | None = 2.0
    credentials: str = "~/.config/campaignctl/gmail-token.json"
    service_account: str | None = None
    delegate: str | None = None
    api_endpoint: str | None = None
    timeout: Duration = timedelta(seconds=30)


def _problems(ch: GmailChannel) -> Iterator[Problem]:
    if ch.delegate and not ch.service_account:
        yield "delegate", "'delegate' needs 'service_account'", "error"
    if (ch.daily_limit or 0) > GMAIL_WORKSPACE_DAILY:
        yield (
            "daily_limit",
            f"Gmail sends at most {GMAIL_WORKSPACE_DAILY:,} a day per Workspace user "
            "(about 500 on a consumer account): the rest would bounce",
            "warning",
        )
    if (ch.per_second or 0) > GMAIL_MAX_PER_SECOND:
        yield (
            "per_second",
            f"Gmail allows about {GMAIL_MAX_PER_SECOND} messages.send a second per user "
            "(15,000 quota units a minute, 100 each): expect 429s",
            "warning",
        )


def _classify(
    cfg: Config, channel: str, r: Received, known: Known, now: datetime
) -> Inbound | None:
    from campaignctl.classify import classify_email, our_addresses

    if r.raw is None:
        return None
    return classify_email(
        r.raw,
        channel=channel,
        ours=our_addresses(cfg),
        known=known,
        now=now,
        provider_id=r.provider_id,  # Gmail's id: the same message is one event, always
        thread_id=r.thread_id,
        received_at=r.received_at,
    )


def _open(cfg: Config, name: str) -> Channel:
    from campaignctl.channels.gmail import open as open_gmail

    return open_gmail(cfg, name)


HEADLESS = """\
No browser on this machine (a server over ssh)? Either:
  - forward the port: run `campaignctl auth gmail --client-secrets FILE --port {port} \
--no-browser` here, then on your workstation run
        ssh -N -L {port}:localhost:{port} USER@THIS-SERVER
    and open the URL below in the workstation's browser; or
  - run `campaignctl auth gmail` on a workstation, then copy the token file to
        {token}
    on this server (for example with scp) and `chmod 600` it.
"""


def _auth(cfg: Config, name: str, values: Mapping[str, Any], say: Callable[[str], None]) -> None:
    from campaignctl.channels.gmail import authorize
    from campaignctl.errors import UsageError

    ch = cfg.channels[name]
    assert isinstance(ch, GmailChannel)
    if ch.service_account:
        raise UsageError(
            f"{cfg.path}: channel {name!r} uses a service account: there is nothing to authorize",
            "domain-wide delegation is granted in the Workspace admin console",
        )
    token = cfg.resolve(ch.credentials).absolute()
    port = values["port"]
    say(HEADLESS.format(port=port or 8765, token=token))
    authorize(
        values["client_secrets"],
        token,
        port=port,
        open_browser=not values["no_browser"],
        prompt="Open this URL to allow campaignctl to send as you:\n\n    {url}\n",
    )
    say(f"gmail channel {name!r}: token saved to {token} (mode 0600)")


AUTH = Auth(
    help="Authorize campaignctl to send (and read replies) as your Gmail account.",
    run=_auth,
    options=(
        AuthOption(
            "client_secrets",
            "--client-secrets",
            "OAuth client JSON of type 'Desktop app', from Google Cloud console.",
            type=Path,
            required=True,
            metavar="FILE",
        ),
        AuthOption(
            "port",
            "--port",
            "Local port for Google's redirect (default: any free port).",
            type=int,
            default=0,
            min=0,
            max=65535,
        ),
        AuthOption(
            "no_browser",
            "--no-browser",
            "Print the consent URL instead of opening a browser.",
            type=bool,
            default=False,
        ),
    ),
    channel_help="Gmail channel to connect (default: the first gmail channel).",
)


PROVIDER = Provider(
    name="gmail",
    config=GmailChannel,
    kinds=("email",),
    open=_open,
    classify=_classify,
    problems=_problems,
    auth=AUTH,
)
