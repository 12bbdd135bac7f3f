"""What every command shares: the loaded campaign file, the store, output helpers."""

import json
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from campaignctl.config import Config
    from campaignctl.hooks import Posted
    from campaignctl.store import Store


class TableOrJson(StrEnum):
    table = "table"
    json = "json"


class TableCsvJson(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@dataclass
class State:
    """Global options, and the campaign file and store loaded at most once per command."""

    config_path: Path | None = None
    _config: "Config | None" = field(default=None, repr=False)
    _store: "Store | None" = field(default=None, repr=False)

    def config(self) -> "Config":
        if self._config is None:
            from campaignctl.config import load

            self._config = load(self.config_path)
        return self._config

    def store(self, *, read_only: bool = False) -> "Store":
        """The campaign file's database. A `read_only` command creates no database file: a
        missing one reads as empty (see `Store.for_reading`)."""
        if self._store is None:
            from campaignctl.store import Store

            if read_only:  # not kept: a later writer in the same command gets the real file
                return Store.for_reading(self.config())
            self._store = Store.for_config(self.config())
        return self._store


def check_names(
    cfg: "Config", campaigns: list[str] | None = None, channels: list[str] | None = None
) -> None:
    """Refuse an unknown --campaign or --channel before a writing command opens (and so
    creates) the database: a failing command leaves no file behind."""
    from campaignctl.config import did_you_mean
    from campaignctl.errors import NotFoundError

    for name in campaigns or ():
        cfg.campaign(name)  # a NotFoundError naming the typo
    for name in channels or ():
        if name not in cfg.channels:
            raise NotFoundError(
                f"{cfg.path}: no channel named {name!r}{did_you_mean(name, cfg.channels)}",
                "the channels are the [channels.NAME] tables of the campaign file",
            )


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # a command invoked without the root callback (tests)
        obj = ctx.find_root().obj = State()
    return obj


# Rich assumes 80 columns when output is not a terminal; cron mail and CI logs have room for
# more, and a truncated column header ("chann…") helps nobody. COLUMNS still wins when set.
PIPE_WIDTH = 160


def _console(stderr: bool) -> "Console":
    import os

    from rich.console import Console

    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def stdout() -> "Console":
    return _console(stderr=False)


def stderr() -> "Console":
    return _console(stderr=True)


def report_error(message: str, hint: str | None = None) -> None:
    """One line on stderr, optionally a hint line; plain text so logs stay greppable."""
    print(f"campaignctl: error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def print_json(data: Any) -> None:
    """JSON alone on stdout, so scripts and tests can parse it."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def post_hooks(cfg: "Config", store: "Store", *, say: bool) -> "Posted | None":
    """POST the outgoing hooks' due events for a few seconds at most (`hooks.post_due`): `send`
    and `sync` do it at their end, so that cron alone posts them. With `say`, a line tells what
    went and each problem is a warning on stderr (a failed POST is retried by a later run with
    backoff); without it (`--quiet`, json), nothing: `status` shows what waits."""
    import os
    import random

    from campaignctl import hooks
    from campaignctl.clock import wall_clock

    posted = hooks.post_due(store, cfg, os.environ, wall_clock, rng=random.Random())
    if posted is None or not say:
        return posted
    for where, why in posted.missing_keys:
        print(f"campaignctl: warning: hooks: {where}: {why}; its events wait", file=sys.stderr)
    for error in posted.done.errors or ():
        print(f"campaignctl: warning: hooks: {error} (retried later)", file=sys.stderr)
    if posted.done.delivered or posted.done.failed:
        print(f"hooks: posted {posted.done.delivered}, failed {posted.done.failed}", flush=True)
    return posted
