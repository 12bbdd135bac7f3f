"""Channels: one module per provider behind the `Channel` protocol, imported only when used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from campaignctl.channels.base import (
    Channel,
    ChannelError,
    ErrorKind,
    Outgoing,
    Reconciled,
    Reconciliation,
    Sent,
)

if TYPE_CHECKING:
    from campaignctl.config import Config

__all__ = [
    "Channel",
    "ChannelError",
    "ErrorKind",
    "Outgoing",
    "Reconciled",
    "Reconciliation",
    "Sent",
    "open_channel",
]

_MODULES = {"outbox": "outbox", "gmail": "gmail", "smtp": "smtp", "twilio": "twilio"}


def open_channel(cfg: Config, name: str) -> Channel:
    """Build the adapter for channel `name` of the campaign file (lazy: SDKs load here)."""
    ch = cfg.channels[name]
    module = importlib.import_module(f"campaignctl.channels.{_MODULES[ch.provider]}")
    channel: Channel = module.open(cfg, name)
    return channel
