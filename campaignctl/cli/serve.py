"""`serve`: the web side (one-click unsubscribe, Twilio's webhooks, tracked links)."""

import os

import typer

from campaignctl.cli.context import state


def serve(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        metavar="ADDRESS",
        help="Address to listen on; put a TLS-terminating proxy in front for the public URL.",
    ),
    port: int = typer.Option(
        8080, "--port", min=0, max=65535, metavar="PORT", help="Port to listen on (0: any free)."
    ),
) -> None:
    """Serve one-click unsubscribe pages, Twilio's webhooks and tracked links for this database
    ([server] table, docs/web.md) until SIGTERM or Ctrl-C. One access-log line per request on
    stderr, with tokens cut short."""
    from campaignctl.web.server import serve as run

    st = state(ctx)
    cfg = st.config()
    run(cfg, st.store(), host, port, os.environ, on_ready=lambda line: typer.echo(line, err=True))


def register(app: typer.Typer) -> None:
    app.command()(serve)
