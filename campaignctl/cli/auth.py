"""`auth gmail` and `auth twilio`: connect an account and check that it works."""

from __future__ import annotations

from pathlib import Path

import typer

from campaignctl.cli.context import state

auth_app = typer.Typer(
    help="Connect and verify provider accounts (Gmail OAuth, Twilio credentials).",
    no_args_is_help=True,
)

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


@auth_app.command("gmail")
def gmail(
    ctx: typer.Context,
    client_secrets: Path = typer.Option(
        ...,
        "--client-secrets",
        metavar="FILE",
        help="OAuth client JSON of type 'Desktop app', from Google Cloud console.",
    ),
    port: int = typer.Option(
        0,
        "--port",
        min=0,
        max=65535,
        help="Local port for Google's redirect (default: any free port).",
    ),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Print the consent URL instead of opening a browser."
    ),
    channel: str | None = typer.Option(
        None, "--channel", help="Gmail channel to connect (default: the first gmail channel)."
    ),
) -> None:
    """Authorize campaignctl to send (and read replies) as your Gmail account."""
    from campaignctl.channels import find_channel
    from campaignctl.channels.gmail import authorize
    from campaignctl.config import GmailChannel
    from campaignctl.errors import UsageError

    cfg = state(ctx).config()
    name = find_channel(cfg, "gmail", channel)
    ch = cfg.channels[name]
    assert isinstance(ch, GmailChannel)
    if ch.service_account:
        raise UsageError(
            f"{cfg.path}: channel {name!r} uses a service account: there is nothing to authorize",
            "domain-wide delegation is granted in the Workspace admin console",
        )
    token = cfg.resolve(ch.credentials).absolute()
    typer.echo(HEADLESS.format(port=port or 8765, token=token))
    authorize(
        client_secrets,
        token,
        port=port,
        open_browser=not no_browser,
        prompt="Open this URL to allow campaignctl to send as you:\n\n    {url}\n",
    )
    typer.echo(f"gmail channel {name!r}: token saved to {token} (mode 0600)")


@auth_app.command("twilio")
def twilio(
    ctx: typer.Context,
    channel: str | None = typer.Option(
        None, "--channel", help="Twilio channel to verify (default: the first twilio channel)."
    ),
) -> None:
    """Verify the Twilio credentials in the environment by fetching the account."""
    from campaignctl.channels import find_channel
    from campaignctl.channels.twilio import verify
    from campaignctl.errors import CampaignctlError, ExitCode

    cfg = state(ctx).config()
    name = find_channel(cfg, "twilio", channel)
    info = verify(cfg, name)
    typer.echo(
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


def register(app: typer.Typer) -> None:
    app.add_typer(auth_app, name="auth")
