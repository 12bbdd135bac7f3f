"""Files attached to an email step (`attachments = ["files/brochure.pdf"]`).

A path is untrusted input (a campaign file may come from a pull request): it is resolved by
`Config.attachment_path`, the rule template files follow (inside the campaign file's directory,
no hidden files, no credentials), and a per-lead template (`files/{{ lead.city | lower }}.pdf`)
is rendered in the sandbox and resolved the same way, so a path that escapes fails that message,
never a read (see render.py). The MIME part is built by `channels.mime`; the size is checked
there against the channel's limit after base64, which is what providers count.

A leaf: any part may import it.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What Gmail accepts for a whole message after base64 (its documented 25 MB), and the default
#: `max_message_size` of SMTP and outbox channels.
DEFAULT_MAX_MESSAGE_SIZE = 25 * 1024 * 1024

#: Room the headers and MIME boundaries take next to the parts, for the estimate `check` and
#: `preview` make before anything is built (the builder checks the exact size).
_OVERHEAD = 4 * 1024


@dataclass(frozen=True)
class Attachment:
    """One file for one message: `name` as the campaign file gave it (rendered for the lead),
    `path` where it is, `size` in bytes when it was resolved."""

    name: str
    path: Path
    size: int

    @property
    def filename(self) -> str:
        """The name the recipient sees: the file's own name, without its folders."""
        return self.path.name

    @property
    def content_type(self) -> tuple[str, str]:
        """(maintype, subtype) guessed from the name; application/octet-stream when unknown."""
        guessed, encoding = mimetypes.guess_type(self.path.name, strict=False)
        if guessed is None or encoding is not None:  # .gz: the type would lie about the bytes
            return "application", "octet-stream"
        main, _, sub = guessed.partition("/")
        return main, sub

    def record(self) -> dict[str, Any]:
        """What a claim stores about the file (never its bytes)."""
        return {"file": self.name, "size": self.size}


def encoded_size(size: int) -> int:
    """Bytes a file of `size` bytes takes in a message: base64 in lines of 76 and CRLF."""
    b64 = 4 * ((size + 2) // 3)
    return b64 + 2 * ((b64 + 75) // 76)


def estimated_message_size(
    attachments: tuple[Attachment, ...] | list[Attachment], *texts: str | None
) -> int:
    """About the size of a message with these attachments and text parts (headers counted as a
    fixed allowance); `check` and `preview` compare it with the channel's limit."""
    body = sum(len(t.encode()) for t in texts if t)
    return _OVERHEAD + body + sum(encoded_size(a.size) + 256 for a in attachments)


def max_message_size(channel: Any) -> int:
    """A channel's limit for one whole message after encoding: its `max_message_size` key
    (SMTP, outbox), else `DEFAULT_MAX_MESSAGE_SIZE` (Gmail's 25 MB)."""
    value = getattr(channel, "max_message_size", None)
    return int(value) if value else DEFAULT_MAX_MESSAGE_SIZE


def human_size(n: int) -> str:
    """`812 B`, `14.2 KB`, `3.1 MB` (powers of 1024)."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def records(attachments: tuple[Attachment, ...]) -> list[dict[str, Any]] | None:
    """The message row's `attachments` value: None when there are none."""
    return [a.record() for a in attachments] or None


def describe(recorded: list[dict[str, Any]] | None) -> str:
    """`files/brochure.pdf (1.2 MB), files/manila.pdf (340.0 KB)` from a message row's value."""
    return ", ".join(
        f"{r.get('file')} ({human_size(int(r.get('size') or 0))})" for r in recorded or []
    )
