"""RFC 5322 email built once for every email provider (Gmail, SMTP, outbox).

`build_email` builds an `EmailMessage` with the standard library (`policy.default`); SMTP sends
that. `email_bytes` is the same message's bytes written directly, for Gmail and the outbox: the
stdlib parses and refolds every header of every message (about 1 ms each, most of the engine's
time per email). It takes the stdlib's own decisions where they matter (the transfer encoding of
each part, the folding of any header that is not plain ASCII on one line, the sender's headers
folded once and remembered), and `tests/test_mime.py` holds it byte for byte to `build_email`.
"""

from __future__ import annotations

import random
import re
import sys
from email import policy
from email.contentmanager import _encode_text  # type: ignore[attr-defined]
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache

from campaignctl.channels.base import Outgoing
from campaignctl.config import Sender


def new_message_id(sender_email: str | None) -> str:
    """A globally unique `<...@domain>` Message-ID, generated before sending and stored."""
    domain = (
        sender_email.rsplit("@", 1)[-1]
        if sender_email and "@" in sender_email
        else "campaignctl.local"
    )
    return make_msgid(domain=domain)


def reply_subject(subject: str | None) -> str:
    """`Re: subject`, without stacking a second `Re:` on a subject that has one."""
    s = subject or ""
    return s if s.lower().startswith("re:") else f"Re: {s}".rstrip()


def _from(sender: Sender) -> Address | str:
    return (
        Address(display_name=sender.name, addr_spec=sender.email) if sender.email else sender.name
    )


def _headers(msg: Outgoing, sender: Sender) -> list[tuple[str, str, bool]]:
    """Every header after From, in order; True marks the sender's (the same on every message)."""
    # A thread step keeps the first email's subject with `Re: `: Gmail only threads a message
    # whose subject matches, and mail clients expect it.
    subject = reply_subject(msg.subject) if msg.in_reply_to else msg.subject or ""
    out = [
        ("To", msg.to, False),
        ("Subject", subject, False),
        ("Date", format_datetime(msg.claimed_at), False),
        ("Message-ID", msg.rfc_message_id or new_message_id(sender.email), False),
    ]
    if sender.reply_to:
        out.append(("Reply-To", sender.reply_to, True))
    if msg.in_reply_to:
        out += [("In-Reply-To", msg.in_reply_to, False), ("References", msg.in_reply_to, False)]
    unsub = []
    if sender.email:
        unsub.append(f"<mailto:{sender.email}?subject=unsubscribe>")
    if sender.unsubscribe_url:
        unsub.append(f"<{sender.unsubscribe_url}>")
        out.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click", True))
    if unsub:
        out.append(("List-Unsubscribe", ", ".join(unsub), True))
    out.append(("X-Campaignctl", f"{msg.campaign}/{msg.step}/{msg.id}", False))
    return out


def build_email(msg: Outgoing, sender: Sender) -> EmailMessage:
    """multipart/alternative (text, plus HTML when there is some), threading and unsubscribe."""
    em = EmailMessage()
    em["From"] = _from(sender)
    for name, value, _same in _headers(msg, sender):
        em[name] = value
    em.set_content(msg.text)
    if msg.html:
        em.add_alternative(msg.html, subtype="html")
    return em


_POLICY = policy.default
#: Printable ASCII words with single spaces: what the stdlib writes back unchanged on one line.
_PLAIN = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
#: A bare addr-spec, which an address header keeps as written.
_ADDR = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_ADDRESS_HEADERS = frozenset({"to", "reply-to"})
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))  # as email.generator makes them
_MAX_LINE = _POLICY.max_line_length or 78


def _stdlib_fold(name: str, value: object) -> bytes:
    """The header exactly as `EmailMessage.as_bytes()` writes it."""
    return bytes(_POLICY.fold_binary(name, _POLICY.header_factory(name, value)))


@lru_cache(maxsize=256)
def _sender_header(name: str, value: str, display_name: str | None = None) -> bytes:
    """Headers that are the same on every message of a sender: folded once."""
    if display_name is not None:
        return _stdlib_fold(name, Address(display_name=display_name, addr_spec=value))
    return _stdlib_fold(name, value)


def _header(name: str, value: str) -> bytes:
    if "=?" not in value and len(name) + 2 + len(value) <= _MAX_LINE:
        plain = _ADDR if name.lower() in _ADDRESS_HEADERS else _PLAIN
        if plain.fullmatch(value):
            return f"{name}: {value}\n".encode("ascii")
    return _stdlib_fold(name, value)


def _text_part(text: str, subtype: str) -> tuple[bytes, bytes]:
    """(Content-* headers, body) of a text part, encoded as `set_content` would choose."""
    cte, payload = _encode_text(text, "utf-8", None, _POLICY)
    headers = f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: {cte}\n'
    # 8bit payloads carry their bytes as surrogate escapes, as the generator writes them
    return headers.encode("ascii"), payload.encode("ascii", "surrogateescape")


def _boundary(body: bytes) -> str:
    """A boundary in email.generator's form that no line of `body` equals."""
    base = "=" * 15 + f"{random.randrange(sys.maxsize):0{_BOUNDARY_WIDTH}d}" + "=="
    found, n = base, 0
    while re.search(rb"^--" + re.escape(found.encode()) + rb"(--)?$", body, re.MULTILINE):
        found, n = f"{base}.{n}", n + 1
    return found


def email_bytes(msg: Outgoing, sender: Sender) -> bytes:
    """`build_email(msg, sender).as_bytes()`, byte for byte (up to the random boundary), fast."""
    out = [
        _sender_header("From", sender.email or sender.name, sender.name if sender.email else None)
    ]
    for name, value, same in _headers(msg, sender):
        out.append(_sender_header(name, value) if same else _header(name, value))
    text_headers, text_body = _text_part(msg.text, "plain")
    if not msg.html:
        return b"".join([*out, text_headers, b"MIME-Version: 1.0\n\n", text_body])
    html_headers, html_body = _text_part(msg.html, "html")
    # add_alternative makes the HTML part an EmailMessage too, hence its own MIME-Version
    parts = [text_headers + b"\n" + text_body, html_headers + b"MIME-Version: 1.0\n\n" + html_body]
    boundary = _boundary(b"\n".join(parts))
    out += [b"MIME-Version: 1.0\n", _multipart_type(boundary), b"\n"]
    sep = f"--{boundary}\n".encode("ascii")
    return b"".join([*out, sep, parts[0], b"\n", sep, parts[1], f"\n--{boundary}--\n".encode()])


def _multipart_type(boundary: str) -> bytes:
    value = f'multipart/alternative; boundary="{boundary}"'
    if len(boundary) == 17 + _BOUNDARY_WIDTH:
        # every boundary of the standard length folds the same: before `boundary=`
        return f'Content-Type: multipart/alternative;\n boundary="{boundary}"\n'.encode("ascii")
    return _stdlib_fold("Content-Type", value)
