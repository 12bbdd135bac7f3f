"""The command line: Typer commands that parse, call one core function, and render with Rich.

Start-up must stay fast (`campaignctl --help` is run by people and by cron wrappers), so this
package imports only typer/click at module level; each command imports the core it uses.

The command modules do without `from __future__ import annotations`: typer reads every
command's annotations on every start, and a string annotation costs a `compile` and an `eval`
each (about a third of `status`'s start-up, issue 15). An annotation naming a type imported
only for the type checker is written in quotes instead.
"""

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from campaignctl import __version__
from campaignctl.cli.context import State, report_error
from campaignctl.errors import CampaignctlError, ExitCode

# click's exceptions, reached through the one typer exports in every version (typer vendors
# click since 0.2x): BadParameter < UsageError < ClickException.
_ClickUsageError: type[Exception] = typer.BadParameter.__mro__[1]
_ClickException: type[Exception] = typer.BadParameter.__mro__[2]


def _report_click_error(exc: Any) -> None:
    """click's `Usage: ... Try ... Error: ...` block as our one error line and a hint."""
    message = " ".join(str(exc.format_message()).split())
    ctx = getattr(exc, "ctx", None)
    hint = f"run `{ctx.command_path} --help`" if ctx is not None else None
    if not isinstance(exc, _ClickUsageError):
        hint = None
    report_error(message, hint)


class _Root(TyperGroup):
    """Turns our errors into one line on stderr and the right exit code; never a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        # Usage errors arise in make_context/parse_args, before `invoke`: run click in
        # non-standalone mode so they reach us, and print them as every other error.
        run = super().main
        extra["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return run(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = run(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `campaignctl`: the help
                exc.show()  # type: ignore[attr-defined]
            else:
                _report_click_error(exc)
            sys.exit(getattr(exc, "exit_code", int(ExitCode.USAGE)))
        except typer.Abort:
            report_error("aborted")
            sys.exit(int(ExitCode.FAILED))
        sys.exit(code if isinstance(code, int) else int(ExitCode.OK))

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        cwd = os.getcwd()
        try:
            return super().invoke(ctx)
        except CampaignctlError as exc:
            report_error(exc.message, exc.hint)
            raise typer.Exit(int(exc.exit_code)) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except BrokenPipeError:
            # The reader went away (`campaignctl leads list | head`): stop quietly, as cat does.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(int(ExitCode.FAILED)) from None
        except KeyboardInterrupt:
            report_error("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Exception as exc:
            if os.environ.get("CAMPAIGNCTL_DEBUG"):
                raise
            report_error(
                f"internal error: {type(exc).__name__}: {exc}",
                "this is a bug: run again with CAMPAIGNCTL_DEBUG=1 and report the traceback",
            )
            raise typer.Exit(int(ExitCode.FAILED)) from None
        finally:
            os.chdir(cwd)


app = typer.Typer(
    name="campaignctl",
    cls=_Root,
    help="Outreach campaigns from a TOML file: email (Gmail, SMTP) and SMS/WhatsApp (Twilio), "
    "within every provider's limits, never twice, never after a stop.",
    no_args_is_help=True,
    # `--install-completion` / `--show-completion`: ~0.2 ms of start-up, measured (shellingham
    # is imported by typer.main anyway; the shell is detected only when the option is used)
    add_completion=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    # Plain click help: typer's rich help formatter costs ~70 ms of imports on every start.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"campaignctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    directory: Path | None = typer.Option(
        None,
        "-C",
        help="Run as if started in DIR (like git -C and make -C).",
        metavar="DIR",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        envvar="CAMPAIGNCTL_CONFIG",
        metavar="FILE",
        help="Campaign file [default: campaigns.toml].",
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Show the version and exit.",
    ),
) -> None:
    if directory is not None:
        try:
            os.chdir(directory)
        except OSError as exc:
            raise CampaignctlError(f"-C {directory}: {exc.strerror}") from None
    ctx.obj = State(config_path=config)


def _register() -> None:
    from campaignctl.cli import auth as auth_cmds
    from campaignctl.cli import campaign as campaign_cmds
    from campaignctl.cli import check as check_cmds
    from campaignctl.cli import daemon as daemon_cmds
    from campaignctl.cli import draft as draft_cmds
    from campaignctl.cli import erase as erase_cmds
    from campaignctl.cli import explain as explain_cmds
    from campaignctl.cli import init as init_cmds
    from campaignctl.cli import lead_edit as lead_edit_cmds
    from campaignctl.cli import leads as leads_cmds
    from campaignctl.cli import messages as messages_cmds
    from campaignctl.cli import optout as optout_cmds
    from campaignctl.cli import preview as preview_cmds
    from campaignctl.cli import report as report_cmds
    from campaignctl.cli import send as send_cmds
    from campaignctl.cli import serve as serve_cmds
    from campaignctl.cli import suppress as suppress_cmds
    from campaignctl.cli import sync as sync_cmds
    from campaignctl.cli import trigger as trigger_cmds

    init_cmds.register(app)
    check_cmds.register(app)
    preview_cmds.register(app)
    leads_cmds.register(app)
    optout_cmds.register(leads_cmds.leads_app)
    erase_cmds.register(leads_cmds.leads_app)
    suppress_cmds.register(app)
    lead_edit_cmds.register(leads_cmds.leads_app)
    campaign_cmds.register(app)
    messages_cmds.register(app)
    send_cmds.register(app)
    sync_cmds.register(app)
    daemon_cmds.register(app)
    serve_cmds.register(app)
    explain_cmds.register(app)
    auth_cmds.register(app)
    draft_cmds.register(app)
    trigger_cmds.register(app)
    report_cmds.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(app(prog_name="campaignctl"))
