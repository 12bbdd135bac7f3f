"""`auth NAME`: connect a provider's account and check that it works (`auth gmail`, `auth twilio`).

Each command is its provider's `auth` (see `channels.registry`); the group loads the providers
only when `auth` itself runs, so `campaignctl --help` loads none.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup


class _ProviderCommands(TyperGroup):
    """A group whose commands are the registered providers' `auth` commands, loaded lazily."""

    _loaded = False
    _commands: dict[str, Any]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from campaignctl.channels.registry import providers

        for provider in providers().values():
            if provider.auth is not None:
                # plain click help and no completion options, like every other command
                one = typer.Typer(add_completion=False, rich_markup_mode=None)
                one.command(provider.name)(provider.auth)
                self.add_command(typer.main.get_command(one), provider.name)

    # click keeps a group's commands in `commands`; loading on its first read serves help,
    # dispatch, completion and whoever walks the tree (tests/test_docs.py).
    @property  # type: ignore[override]
    def commands(self) -> dict[str, Any]:
        self._load()
        return self._commands

    @commands.setter
    def commands(self, value: dict[str, Any]) -> None:
        self._commands = value


auth_app = typer.Typer(
    cls=_ProviderCommands,
    help="Connect and verify provider accounts (Gmail OAuth, Twilio credentials).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(auth_app, name="auth")
