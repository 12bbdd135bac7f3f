"""The `outbox` channel: one file per message instead of a provider, for demos, staging and tests.

Email becomes `<message id>.eml` (RFC 5322, written by `mime.email_bytes`), SMS and WhatsApp become
`<message id>.json` with `to`, `from` and `body` (`test-<id>.*` for `send --test-to`). Files are
written to a temporary name and renamed, so a file either exists whole or not at all, and
`reconcile()` is "does the file exist". Files are not fsynced (that would cost milliseconds per
message): a killed process loses nothing, and after a power cut a file may be missing for a
message recorded as sent, never the reverse, which keeps "at most once" true.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from campaignctl.channels.base import (
    ChannelError,
    ErrorKind,
    Outgoing,
    Reconciled,
    Reconciliation,
    Sent,
)

if TYPE_CHECKING:
    from campaignctl.config import Config, Sender


class Outbox:
    """Writes each message to `folder` atomically; the file name is the provider id."""

    #: Only the host whose disk holds the folder can tell what was sent: a message this
    #: channel may have sent is reconciled by a worker of the host that claimed it.
    host_local = True

    def __init__(
        self,
        name: str,
        kind: str,
        folder: Path,
        sender: Sender,
        sender_from: str,
        max_size: int | None = None,
    ):
        self.name = name
        self.max_size = max_size
        self.kind = kind
        self.folder = folder
        self.sender = sender
        self.sender_from = sender_from

    def _file(self, msg: Outgoing) -> Path:
        # a test send's id is a test_send row's, not a message's: its own names
        stem = f"test-{msg.id}" if msg.test else str(msg.id)
        return self.folder / f"{stem}.{'eml' if msg.kind == 'email' else 'json'}"

    def send(self, msg: Outgoing) -> Sent:
        """Write the message; an OSError (disk full, permissions) is transient."""
        from campaignctl.channels.mime import email_bytes

        target = self._file(msg)
        if msg.kind == "email":
            data = email_bytes(msg, self.sender, max_size=self.max_size)
        else:
            data = json.dumps(
                {"to": msg.to, "from": self.sender_from, "body": msg.text}, ensure_ascii=False
            ).encode()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            raise ChannelError(
                ErrorKind.TRANSIENT,
                f"channel {self.name}: cannot write {target}: {exc.strerror}",
                code="oserror",
                hint=f"check that {self.folder} is writable",
            ) from None
        return Sent(provider_id=target.name, thread_id=msg.thread_id or msg.in_reply_to)

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        """Sent when the message's file exists, not sent otherwise (it is never half there)."""
        target = self._file(msg)
        if target.exists():
            return Reconciliation(Reconciled.SENT, provider_id=target.name)
        for stale in self.folder.glob(f".{target.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        return Reconciliation(Reconciled.NOT_SENT)

    def close(self) -> None:
        """Nothing to release."""


def open(cfg: Config, name: str) -> Outbox:
    """The outbox for channel `name`: `path` is relative to the campaign file."""
    from campaignctl.channels.providers.outbox import OutboxChannel

    ch = cfg.channels[name]
    assert isinstance(ch, OutboxChannel)
    kind = cfg.channel_kind(name)
    sender_from = cfg.sender.email or cfg.sender.name if kind == "email" else name
    return Outbox(
        name, kind, cfg.resolve(ch.path), cfg.sender, sender_from or name, ch.max_message_size
    )
