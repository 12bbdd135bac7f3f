"""`auth NAME`: connect a provider's account and check that it works (`auth gmail`, `auth twilio`).

Each provider declares its command as data (`channels.registry.Auth`); `auth_command` builds the
command from it, adding `--channel`. The group loads the providers only when `auth` itself
runs, so `campaignctl --help` loads none.
"""

import inspect
from typing import TYPE_CHECKING, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from campaignctl.channels.registry import Auth, AuthOption
    from campaignctl.config import Config

#: The option every `auth NAME` has; the provider's `run` gets the channel it chose.
CHANNEL = "channel"


def _parameter(option: "AuthOption") -> inspect.Parameter:
    if option.name in ("ctx", CHANNEL) or not option.name.isidentifier():
        raise ValueError(f"auth option {option.name!r}: use another Python name")
    annotation: Any = option.type
    if option.default is None and not option.required:
        annotation = Optional[option.type]  # noqa: UP045 (a runtime type for typer)
    default = typer.Option(
        ... if option.required else option.default,
        option.flag,
        help=option.help,
        metavar=option.metavar,
        min=option.min,
        max=option.max,
    )
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def auth_command(provider: str, auth: "Auth") -> TyperCommand:
    """`campaignctl auth PROVIDER` from its declaration: the provider's options, then
    `--channel` (resolved with `channels.find_channel`), then `run`, whose `say` is the screen."""

    def command(ctx: typer.Context, **values: Any) -> None:
        from campaignctl.channels import find_channel
        from campaignctl.cli.context import state

        channel = values.pop(CHANNEL)
        cfg = state(ctx).config()
        name = find_channel(cfg, provider, channel)
        auth.run(cfg, name, values, typer.echo)
        _verified(cfg, name)

    channel_help = auth.channel_help or (
        f"{provider.capitalize()} channel to use (default: the first {provider} channel)."
    )
    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
        *map(_parameter, auth.options),
        inspect.Parameter(
            CHANNEL,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--channel", help=channel_help),
            annotation=Optional[str],  # noqa: UP045
        ),
    ]
    # typer reads a command's parameters from its signature and type hints
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    # plain click help and no completion options, like every other command
    one = typer.Typer(add_completion=False, rich_markup_mode=None)
    one.command(provider, help=auth.help)(command)
    built = typer.main.get_command(one)
    assert isinstance(built, TyperCommand)
    return built


def _verified(cfg: "Config", channel: str) -> None:
    """The channel's credentials work (`auth` raised nothing): what `status` said it needed
    from a person is done. A database that does not exist yet is not created."""
    from campaignctl.daemon import needs_person, note_needs_person
    from campaignctl.store import Store

    store = Store.existing(cfg.database_url(), lazy=True)
    if store is None:
        return
    try:
        if channel in needs_person(store):
            note_needs_person(store, channel, None)
    finally:
        store.close()


class _ProviderCommands(TyperGroup):
    """A group whose commands are the registered providers' `auth` commands, built lazily and
    kept in step with the registry (`registry.register` in tests and embedding code)."""

    _commands: dict[str, Any]
    _built: "dict[str, Auth]"

    def _sync(self) -> None:
        from campaignctl.channels.registry import providers

        built = self.__dict__.setdefault("_built", {})
        wanted = {p.name: p.auth for p in providers().values() if p.auth is not None}
        for name in [n for n in built if wanted.get(n) is not built[n]]:
            self._commands.pop(name, None)
            del built[name]
        for name, auth in wanted.items():
            if name not in built:
                self._commands[name] = auth_command(name, auth)
                built[name] = auth

    # click keeps a group's commands in `commands`; building them on each read serves help,
    # dispatch, completion and whoever walks the tree (tests/test_docs.py).
    @property  # type: ignore[override]
    def commands(self) -> dict[str, Any]:
        self._sync()
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
