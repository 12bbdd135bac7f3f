"""`provider = "outbox"`: every message a file in a folder (`campaignctl.channels.outbox`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import PositiveInt

from campaignctl.attachments import DEFAULT_MAX_MESSAGE_SIZE
from campaignctl.channels.registry import Problem, Provider
from campaignctl.config import CHANNEL_KINDS, ChannelBase

if TYPE_CHECKING:
    from campaignctl.channels.base import Channel
    from campaignctl.config import Config


class OutboxChannel(ChannelBase):
    provider: Literal["outbox"]
    path: str = "outbox"
    #: bytes one email may take after base64 (attachments), as for SMTP: over it, it fails
    max_message_size: PositiveInt = DEFAULT_MAX_MESSAGE_SIZE


def unwritable(folder: Path) -> str | None:
    """Why files cannot be written in `folder` (created when missing), or None when they can.

    Creates nothing: a missing folder is judged by its nearest existing ancestor.
    """
    if folder.exists():
        if not folder.is_dir():
            return "it is a file, not a folder"
        return None if os.access(folder, os.W_OK | os.X_OK) else "the folder is not writable"
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"it cannot be created: {parent} is a file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"it cannot be created: {parent} is not writable"
    return None


def _environment_problems(cfg: Config, name: str, ch: OutboxChannel) -> Iterator[Problem]:
    folder = cfg.resolve(ch.path)
    reason = unwritable(folder)
    if reason:
        yield "path", f"the outbox folder {folder} cannot take messages: {reason}", "error"


def _open(cfg: Config, name: str) -> Channel:
    from campaignctl.channels.outbox import open as open_outbox

    return open_outbox(cfg, name)


PROVIDER = Provider(
    name="outbox",
    config=OutboxChannel,
    kinds=CHANNEL_KINDS,
    open=_open,
    cannot_read="the outbox writes files; nothing comes back",
    environment_problems=_environment_problems,
)
