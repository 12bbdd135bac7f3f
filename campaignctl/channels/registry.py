"""Providers: what each `provider = "..."` of the campaign file is, found by one cached factory.

A provider is one `Provider` object, exported as `PROVIDER` by its module. The built-in ones are
listed in `BUILTINS` and loaded through the same door as a plugin's: an `importlib.metadata`
entry point (`[project.entry-points."campaignctl.providers"]` in the plugin's pyproject.toml,
`ses = "campaignctl_ses:PROVIDER"`). A declaration module is light: it imports its SDK in
`open()` (or in an adapter module that `open()` imports), because loading the campaign file
loads every declaration.

`get(name)` is the factory; an unknown name raises `UnknownProviderError`, which lists the valid
ones. The campaign file's `[channels.NAME]` union is built from `providers()`
(`config_union()`), so a new provider needs no change outside its own module.

`campaignctl auth NAME` is declared as data, like the keys: `Provider.auth` is an `Auth` (its
help, its options as `AuthOption`s, and `run(cfg, channel, values, say)`), and the CLI builds the
command from it (`campaignctl.cli.auth`), adding `--channel` (which channel of the provider; the
first by default). A plugin declares its own the same way, without importing typer:

    def _verify(cfg, channel, values, say):
        quota = ses_client(cfg, channel, values["profile"]).get_send_quota()
        say(f"ses channel {channel!r}: {quota['Max24HourSend']:.0f} a day")

    PROVIDER = Provider(
        name="ses", ...,
        auth=Auth(
            help="Verify the SES credentials by fetching the sending quota.",
            run=_verify,
            options=(AuthOption("profile", "--profile", "AWS profile to use.", default="default"),),
        ),
    )

`run` reports through `say` (one line or paragraph a call) and fails by raising a
`CampaignctlError` (`UsageError` for exit 2; `exit_code` sets another), never by printing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaignctl.errors import CampaignctlError

if TYPE_CHECKING:
    from datetime import datetime

    from campaignctl.channels.base import Channel, Received
    from campaignctl.classify import Inbound, Known
    from campaignctl.config import ChannelBase, Config

GROUP = "campaignctl.providers"

#: The built-in providers, in the order error messages list them; entry points of this group,
#: written the way a plugin's pyproject.toml writes them.
BUILTINS = (
    "gmail = campaignctl.channels.providers.gmail:PROVIDER",
    "smtp = campaignctl.channels.providers.smtp:PROVIDER",
    "twilio = campaignctl.channels.providers.twilio:PROVIDER",
    "outbox = campaignctl.channels.providers.outbox:PROVIDER",
)

#: A rule across a channel's keys: (key under `channels.NAME`, message, "error" | "warning").
Problem = tuple[str, str, str]


@dataclass(frozen=True)
class AuthOption:
    """One option of `campaignctl auth NAME`, as data: the CLI makes the command-line option."""

    #: The key in `run`'s `values` (a Python name; not `channel`, which the CLI owns).
    name: str
    #: The option as typed: `--client-secrets`.
    flag: str
    #: One line for `--help`.
    help: str
    #: What the value is: str, int, bool (a flag, False unless given) or Path.
    type: type[str] | type[int] | type[bool] | type[Path] = str
    #: The value when the option is not given (shown by `--help` unless None or False).
    default: str | int | bool | Path | None = None
    #: A required option has no default: without it the command is a usage error (exit 2).
    required: bool = False
    #: The placeholder `--help` shows (`FILE`); None: the type's.
    metavar: str | None = None
    #: Bounds of an int option, inclusive.
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class Auth:
    """`campaignctl auth NAME`: connect the provider's account and check that it works."""

    #: The command's help (its first line is its summary in `campaignctl auth --help`).
    help: str
    #: `run(cfg, channel, values, say)`: `channel` is the channel of this provider `--channel`
    #: chose (found by `channels.find_channel`), `values` the options by `AuthOption.name`;
    #: it reports through `say` and fails by raising a `CampaignctlError`.
    run: Callable[[Config, str, Mapping[str, Any], Callable[[str], None]], None]
    #: Its options, in the order `--help` lists them (before `--channel`).
    options: tuple[AuthOption, ...] = ()
    #: The help of `--channel`; None: "NAME channel to use (default: the first NAME channel)."
    channel_help: str | None = None


@dataclass(frozen=True)
class Provider:
    """One provider: its keys in the campaign file, what it sends, and how to open it."""

    #: The `provider = "..."` value.
    name: str
    #: The `[channels.NAME]` table: a `ChannelBase` subclass whose `provider` is
    #: `Literal[name]` (unknown keys are refused with the model's keys as suggestions).
    config: type[ChannelBase]
    #: What it can send: "email" (to a lead's email address), "sms" or "whatsapp" (to a lead's
    #: phone). A provider with one kind makes every channel of it that kind.
    kinds: tuple[str, ...]
    #: The adapter for channel `name` of the campaign file (the SDK is imported here).
    open: Callable[[Config, str], Channel]
    #: Why `sync` cannot read this provider's replies (None: `open` returns an `Inbox`).
    cannot_read: str | None = None
    #: What one thing its inbox read means (`classify(cfg, channel, received, known, now)`:
    #: a `classify.Inbound`, or None to ignore it), for `sync` to record.
    classify: Callable[[Config, str, Received, Known, datetime], Inbound | None] | None = None
    #: A kind told by the table's values (Twilio: a `whatsapp:` sender), before the channel's
    #: name and `default_kind` are consulted.
    kind_of: Callable[[Any], str | None] | None = None
    #: The kind when neither `kind`, the values nor the channel's name tell.
    default_kind: str | None = None
    #: Rules across the table's keys that pydantic cannot express, for `check` and loading.
    problems: Callable[[Any], Iterable[Problem]] | None = None
    #: Rules about the machine the campaign runs on (a folder that must be writable): `check`.
    environment_problems: Callable[[Config, str, Any], Iterable[Problem]] | None = None
    #: Who a text message comes from, as `preview` shows it.
    sender: Callable[[Any], str | None] | None = None
    #: `campaignctl auth NAME`, as data (the CLI builds the command); None: no such command.
    auth: Auth | None = None


class UnknownProviderError(CampaignctlError):
    """A provider name nobody registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(
            unknown_provider_message(name, known),
            "a plugin's provider appears once its package is installed",
        )
        self.name = name


def unknown_provider_message(name: object, known: Iterable[str]) -> str:
    """`unknown provider 'x': use one of gmail, smtp, twilio, outbox` (also said by `check`)."""
    return f"unknown provider {name!r}: use one of " + ", ".join(known)


def _load(ep: EntryPoint) -> Provider:
    try:
        provider = ep.load()
    except (ImportError, AttributeError) as exc:
        raise CampaignctlError(
            f"provider {ep.name!r} ({ep.value}) cannot be loaded: {exc}",
            "reinstall the package that provides it, or uninstall it",
        ) from None
    if not isinstance(provider, Provider) or provider.name != ep.name:
        raise CampaignctlError(
            f"provider {ep.name!r} ({ep.value}) is not a Provider named {ep.name!r}",
            "a provider module exports PROVIDER = Provider(name=..., ...)",
        )
    return provider


def _name_value(ref: str) -> tuple[str, str]:
    name, value = ref.split(" = ")
    return name, value


#: Installed plugins that failed to load, by name: left out of `providers()`, so a broken
#: plugin stops only the campaign files that name it (`broken_message` says why).
_broken: dict[str, CampaignctlError] = {}


@functools.cache
def providers() -> dict[str, Provider]:
    """Every provider by name: the built-ins first, then the installed plugins' (cached)."""
    builtins = [EntryPoint(*_name_value(ref), group=GROUP) for ref in BUILTINS]
    found: dict[str, Provider] = {name: _load(ep) for ep in builtins for name in [ep.name]}
    _broken.clear()
    for ep in entry_points(group=GROUP):
        if ep.name in found:
            continue  # a built-in also declared as an entry point, or a plugin shadowing one
        try:
            found[ep.name] = _load(ep)
        except CampaignctlError as exc:
            _broken[ep.name] = exc
    return found


def broken_message(name: object) -> str | None:
    """Why the plugin `name` is missing when it is installed but failed to load, else None."""
    providers()
    exc = _broken.get(name) if isinstance(name, str) else None
    return None if exc is None else f"{exc.message}; {exc.hint}"


def get(name: str) -> Provider:
    """The provider called `name`; UnknownProviderError (listing the valid ones) when none is."""
    try:
        return providers()[name]
    except KeyError:
        raise UnknownProviderError(name, providers()) from None


def register(provider: Provider) -> None:
    """Add (or replace) a provider at run time: tests, and code that embeds campaignctl.

    Installed plugins need not call this: their entry points are found by `providers()`.
    """
    providers()[provider.name] = provider
    config_union.cache_clear()


def unregister(name: str) -> None:
    """Remove a provider added by `register` (a test cleaning up after itself)."""
    providers().pop(name, None)
    config_union.cache_clear()


@functools.cache
def config_union() -> Any:
    """The `[channels.NAME]` type: the providers' models, told apart by `provider`."""
    from typing import Annotated, Union

    from pydantic import Field

    models = tuple(p.config for p in providers().values())
    return Annotated[Union[models], Field(discriminator="provider")]  # noqa: UP007
