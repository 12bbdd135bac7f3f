"""Channels: one adapter per provider behind the `Channel` protocol, imported only when used.

Which providers exist, and how each is opened, is `channels.registry`'s to say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaignctl.channels.base import (
    Channel,
    ChannelError,
    CredentialsError,
    ErrorKind,
    Fetched,
    Inbox,
    Outgoing,
    Received,
    Reconciled,
    Reconciliation,
    Sent,
)

if TYPE_CHECKING:
    from campaignctl.config import Config

__all__ = [
    "Channel",
    "ChannelError",
    "CredentialsError",
    "ErrorKind",
    "Fetched",
    "Inbox",
    "Outgoing",
    "Received",
    "Reconciled",
    "Reconciliation",
    "Sent",
    "find_channel",
    "open_channel",
]


def open_channel(cfg: Config, name: str) -> Channel:
    """Build the adapter for channel `name` of the campaign file (lazy: SDKs load here)."""
    from campaignctl.channels.registry import get

    return get(cfg.channels[name].provider).open(cfg, name)


def find_channel(cfg: Config, provider: str, name: str | None = None) -> str:
    """The channel `name` (checked to use `provider`), else the first channel using `provider`."""
    from campaignctl.channels.registry import get
    from campaignctl.config import did_you_mean
    from campaignctl.errors import NotFoundError, UsageError

    if name is not None:
        if name not in cfg.channels:
            raise NotFoundError(
                f"{cfg.path}: no channel named {name!r}{did_you_mean(name, cfg.channels)}",
                "see [channels] in the campaign file",
            )
        if cfg.channels[name].provider != provider:
            raise UsageError(
                f"{cfg.path}: channel {name!r} uses provider "
                f"{cfg.channels[name].provider!r}, not {provider!r}",
                f"pass --channel with a {provider} channel",
            )
        return name
    for cname, ch in cfg.channels.items():
        if ch.provider == provider:
            return cname
    raise NotFoundError(
        f"{cfg.path}: no channel with provider = {provider!r}",
        f'add one, e.g. [channels.{get(provider).kinds[0]}] with provider = "{provider}"',
    )
