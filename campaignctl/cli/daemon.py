"""`daemon`: send on every tick and sync on every sync_interval until SIGTERM."""

import signal
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from campaignctl.cli.context import state, stdout
from campaignctl.errors import ExitCode

if TYPE_CHECKING:
    from campaignctl.daemon import Daemon


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def daemon(
    ctx: typer.Context,
    log_format: LogFormat = typer.Option(
        LogFormat.text,
        "--log-format",
        help="text: one greppable line per event; json: one JSON object per line (journald).",
    ),
    live: bool = typer.Option(
        True,
        "--live/--no-live",
        help="On a terminal, a live per-channel view above the log lines.",
    ),
    serve: bool = typer.Option(
        False,
        "--serve",
        help="Also run `campaignctl serve` in this process (the [server] table's web side).",
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="ADDRESS", help="With --serve: the address to listen on."
    ),
    port: int = typer.Option(
        8080, "--port", min=0, max=65535, metavar="PORT", help="With --serve: the port."
    ),
) -> None:
    """Run the engine every `tick` and `sync` every `sync_interval` ([daemon] table), and post
    the outgoing hooks ([[hooks]]); the first SIGTERM/SIGINT finishes the message in flight and
    exits 0, a second stops at once."""
    from campaignctl.daemon import Daemon, EventLog

    st = state(ctx)
    log = EventLog(json=log_format is LogFormat.json)
    console = stdout()
    view = _LiveView() if live and log_format is LogFormat.text and console.is_terminal else None
    d = Daemon(st.config(), st.store(), log, on_change=view.refresh if view else lambda: None)
    web = None
    if serve:  # checked (key, extra, port) before the daemon takes the send lock
        import os

        from campaignctl.web.server import prepare

        web = prepare(d.cfg, st.store(), host, port, os.environ)
        log.emit("serve", f"serving {web.url}")
    if view is not None:
        view.attach(d)
        log.printer = view.print
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handle(_signum: int, _frame: Any) -> None:
        if d.stop_requested:
            raise KeyboardInterrupt
        print(
            "campaignctl: stopping after the message in flight (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        d.request_stop()

    try:
        for s in old:
            signal.signal(s, handle)
    except ValueError:  # not the main thread (in-process tests): no handlers
        old = {}
    try:
        if web is not None:
            web.start()
        if view is not None:
            with view:
                d.run()
        else:
            d.run()
    finally:
        if web is not None:
            web.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if d.interrupted:
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    if d.exit_code:
        raise typer.Exit(int(d.exit_code))


class _LiveView:
    """Per channel: sent in 24 h of the daily limit, next due, queue, last error."""

    def __init__(self) -> None:
        from rich.live import Live

        self.daemon: Daemon | None = None
        self._drawn = float("-inf")
        self.live = Live(console=stdout(), auto_refresh=False)

    def attach(self, d: "Daemon") -> None:
        self.daemon = d

    def __enter__(self) -> "_LiveView":
        self.live.__enter__()
        self.refresh()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def print(self, line: str) -> None:
        self.live.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def refresh(self) -> None:
        import time

        from rich.table import Table

        from campaignctl.clock import wall_clock
        from campaignctl.daemon import channel_view

        d = self.daemon
        # a paced channel makes many passes a second: redraw (and query) at most once a second
        if d is None or time.monotonic() - self._drawn < 1.0:
            return
        self._drawn = time.monotonic()
        nxt = d.next_due.strftime("%H:%M:%S UTC") if d.next_due else "-"
        t = Table(title=f"campaignctl daemon ({d.cfg.path}); next due {nxt}")
        for h in ("channel", "sent 24 h", "queue", "next due", "last error"):
            t.add_column(h, justify="right" if h in ("sent 24 h", "queue") else "left")
        for row in channel_view(d.cfg, d.store, wall_clock()):
            limit = f" of {row['daily_limit']}" if row["daily_limit"] else ""
            due = row["next_due"].strftime("%m-%d %H:%M") if row["next_due"] else "-"
            t.add_row(
                row["channel"],
                f"{row['sent_24h']}{limit}",
                str(row["queue"]),
                due,
                d.last_errors.get(row["channel"], "")[:60],
            )
        self.live.update(t, refresh=True)


def register(app: typer.Typer) -> None:
    app.command()(daemon)
