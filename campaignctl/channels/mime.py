"""RFC 5322 email built once for every email provider (Gmail, SMTP, outbox).

Built with the stdlib's compat32 MIME classes (`email.mime`) rather than `EmailMessage`: the
bytes are the same kind of message (multipart/alternative, quoted-printable UTF-8 parts,
RFC 2047 encoded headers), but the modern header registry parses and refolds every header
on output, which made building the MIME cost more than claiming, sending and recording a
message together (about 1 ms against 0.25 ms). Quoted-printable keeps bodies readable in
`.eml` files and 7-bit safe for any SMTP server.

A message to or from an address outside ASCII (`josé@example.org`) cannot be 7-bit: an
addr-spec is never RFC 2047 encoded, so its headers are raw UTF-8 (RFC 6532) and an SMTP relay
must offer SMTPUTF8 (RFC 6531). `email_bytes` writes such a message with `policy.SMTPUTF8`,
every other one with compat32 as before.

A step's attachments (campaignctl/attachments.py) make it multipart/mixed: the body as above,
then each file base64-encoded, its MIME type guessed by `mimetypes`, its name in
`Content-Disposition` (RFC 2231 encoded when not ASCII, by the stdlib). The files are read here,
when the message is built; a message over the channel's limit (`max_size`, counted as sent, after
base64 and with CRLF line ends) is this message's permanent failure, and a file larger than the
limit is refused before it is read.
"""

from __future__ import annotations

import re
from email import encoders, policy
from email._policybase import Compat32
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid, quote
from io import BytesIO
from typing import Any

from campaignctl.attachments import Attachment, encoded_size, human_size
from campaignctl.channels.base import UNSENDABLE, ChannelError, ErrorKind, Outgoing
from campaignctl.config import Sender, header_problem

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


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


def _text_part(text: str, subtype: str) -> MIMEText:
    part = MIMEText(text, subtype, _UTF8_QP)  # type: ignore[arg-type]  # a Charset is accepted
    return part


def needs_utf8(msg: Outgoing, sender: Sender) -> bool:
    """True when an address is not ASCII: the message then needs UTF-8 headers (RFC 6532)."""
    return not all(a.isascii() for a in (msg.to, sender.email or "", sender.reply_to or ""))


def _header(value: str, utf8: bool) -> str | Header:
    """The value, or a Header that the generator writes as RFC 2047 encoded words."""
    return value if value.isascii() or utf8 else Header(value, "utf-8")


def format_address(name: str | None, addr: str) -> str:
    """`"First Last" <addr>`: the name quoted, or RFC 2047 encoded when it is not ASCII and the
    address is; the addr-spec never encoded (raw UTF-8 when it is not ASCII, see `email_bytes`).

    Whitespace in the name (CR and LF included) is collapsed: a lead's name never starts a header.
    """
    name = " ".join((name or "").split())
    if addr.isascii():
        return formataddr((name, addr), charset="utf-8")
    # formataddr refuses a non-ASCII address; quote the name as it would
    return f'"{quote(name)}" <{addr}>' if name else addr


def _body(msg: Outgoing) -> Message[str, Any]:
    """The text part, or text and HTML as alternatives. Header values may be `Header`s."""
    if not msg.html:
        return _text_part(msg.text, "plain")
    em = MIMEMultipart("alternative")
    for part in (_text_part(msg.text, "plain"), _text_part(msg.html, "html")):
        del part["MIME-Version"]  # once, on the message itself
        em.attach(part)
    return em


def _attachment_part(a: Attachment) -> MIMEBase:
    """One file as a base64 part named by `Content-Disposition`; its name is never a header's
    line break (refused), and when it is not ASCII the stdlib writes it per RFC 2231."""
    why = header_problem(a.filename)
    if why:
        raise ChannelError(
            ErrorKind.PERMANENT,
            f"attachment {a.name!r}: its file name {why}",
            code=UNSENDABLE,
            hint="rename the file",
        )
    try:
        data = a.path.read_bytes()
    except OSError as exc:
        raise ChannelError(
            ErrorKind.PERMANENT,
            f"attachment {a.name!r} cannot be read: {exc.strerror}",
            code=UNSENDABLE,
            hint="check that the file is still in the project folder",
        ) from None
    main, sub = a.content_type
    part = MIMEBase(main, sub)
    del part["MIME-Version"]
    part.set_payload(data)
    encoders.encode_base64(part)
    name: str | tuple[str, str, str] = (
        a.filename if a.filename.isascii() else ("utf-8", "", a.filename)
    )
    part.add_header("Content-Disposition", "attachment", filename=name)
    return part


def _too_large(size: int, limit: int, channel: str, estimated: bool = False) -> ChannelError:
    what = "its attachments alone take" if estimated else "the message is"
    return ChannelError(
        ErrorKind.PERMANENT,
        f"{what} {human_size(size)} after base64 encoding, over channel {channel}'s limit of "
        f"{human_size(limit)} for one message",
        code=UNSENDABLE,
        hint="attach smaller files (or link to them); SMTP and outbox channels take "
        "max_message_size in bytes",
    )


def build_email(msg: Outgoing, sender: Sender, *, max_size: int | None = None) -> Message:
    """multipart/alternative (text, plus HTML when there is some), threading and unsubscribe,
    in a multipart/mixed with the step's attachments when it has some.

    `max_size`: attachments whose encoded size alone exceeds it are refused unread.

    Serialise it with `email_bytes`: a message with a non-ASCII address needs a UTF-8 policy.
    Any failure is this message's permanent ChannelError (see `UNSENDABLE`), raised before a
    provider is asked: never `uncertain`, never counted by the circuit breaker.
    """
    if max_size is not None and msg.attachments:
        encoded = sum(encoded_size(a.size) for a in msg.attachments)
        if encoded > max_size:
            raise _too_large(encoded, max_size, msg.channel, estimated=True)
    try:
        return _build_email(msg, sender)
    except ChannelError:
        raise
    except Exception as exc:  # the message's own content: retrying cannot help
        raise _unsendable(exc) from None


def _unsendable(exc: Exception) -> ChannelError:
    return ChannelError(
        ErrorKind.PERMANENT,
        f"the message cannot be written as an email: {type(exc).__name__}: {exc}",
        code=UNSENDABLE,
        hint="check the campaign file's [sender] and the lead's data with `campaignctl check`",
    )


def _build_email(msg: Outgoing, sender: Sender) -> Message:
    utf8 = needs_utf8(msg, sender)
    em = _body(msg)
    if msg.attachments:
        body, em = em, MIMEMultipart("mixed")
        del body["MIME-Version"]
        em.attach(body)
        for a in msg.attachments:
            em.attach(_attachment_part(a))
    em["From"] = (
        format_address(sender.name, sender.email)
        if sender.email
        else _header(" ".join(sender.name.split()), utf8)
    )
    em["To"] = format_address(msg.to_name, msg.to)
    # A thread step keeps the first email's subject with `Re: `: Gmail only threads a message
    # whose subject matches, and mail clients expect it.
    subject = reply_subject(msg.subject) if msg.in_reply_to else msg.subject or ""
    em["Subject"] = _header(subject, utf8)
    em["Date"] = format_datetime(msg.claimed_at)
    em["Message-ID"] = msg.rfc_message_id or new_message_id(sender.email)
    if sender.reply_to:
        em["Reply-To"] = sender.reply_to
    if msg.in_reply_to:
        em["In-Reply-To"] = msg.in_reply_to
        em["References"] = msg.in_reply_to
    unsub = []
    # the signed one-click link with [server], else the sender's URL rendered for the lead
    # (see render.py); first, since mail clients use the leftmost method they support
    # (RFC 2369), and the one-click POST (RFC 8058) takes effect at once, the mailto only
    # when `sync` reads the reply
    url = msg.unsubscribe_url if msg.unsubscribe_url is not None else sender.unsubscribe_url
    if url:
        unsub.append(f"<{url}>")
        em["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if sender.email:
        unsub.append(f"<mailto:{sender.email}?subject=unsubscribe>")
    if unsub:
        em["List-Unsubscribe"] = ", ".join(unsub)
    em["X-Campaignctl"] = f"{msg.campaign}/{msg.step}/{'test-' if msg.test else ''}{msg.id}"
    if msg.test:
        em["X-Campaignctl-Test"] = "1"
    _refuse_line_breaks(em)
    return em


#: RFC 6532 headers (raw UTF-8), for a message whose addresses are not all ASCII.
_UTF8_POLICY = policy.SMTPUTF8

#: A header value compat32 writes as it is: printable ASCII words separated by single spaces.
_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")


class _Compat32(Compat32):
    """compat32 that writes a header fitting on one line without the `Header` folding machinery
    (about 40 us a header, most of what writing a message cost): a value of printable ASCII
    words separated by single spaces whose line fits in `max_line_length` is folded by the
    stdlib to itself, so the bytes are the same (tests/test_mime_fast.py holds the two equal on
    generated values). Any other value goes the stdlib's way."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        limit = self.max_line_length or 0
        if (
            type(value) is str
            and (limit == 0 or len(name) + 2 + len(value) <= limit)
            and _PLAIN_VALUE.fullmatch(value)
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[misc, no-any-return]


_COMPAT32 = _Compat32()


def email_bytes(
    msg: Outgoing, sender: Sender, *, linesep: str = "\n", max_size: int | None = None
) -> bytes:
    """The message as a provider gets it: 7-bit with RFC 2047 headers, or UTF-8 headers when an
    address is not ASCII. `linesep="\r\n"` for SMTP's DATA. `max_size`: the channel's limit
    for the whole message (see `to_bytes`); None checks nothing (preview)."""
    em = build_email(msg, sender, max_size=max_size)
    data = to_bytes(em, utf8=needs_utf8(msg, sender), linesep=linesep)
    check_size(data, max_size, msg.channel, linesep)
    return data


def check_size(data: bytes, max_size: int | None, channel: str, linesep: str = "\n") -> None:
    """Refuse a message over `max_size` bytes as sent (line ends counted as CRLF): a permanent
    failure of this message, before the provider is asked."""
    if max_size is None:
        return
    size = len(data) + (data.count(b"\n") if linesep == "\n" else 0)
    if size > max_size:
        raise _too_large(size, max_size, channel)


def to_bytes(em: Message, *, utf8: bool, linesep: str = "\n") -> bytes:
    """A message from `build_email` as bytes (`utf8`: `needs_utf8` of what it was built from).

    The generator refuses some header values only here (`HeaderParseError`): like any failure
    to serialise, that is the message's permanent ChannelError, never an unknown outcome."""
    out = BytesIO()
    gen_policy = _UTF8_POLICY if utf8 else _COMPAT32 if em.policy is policy.compat32 else em.policy
    try:
        BytesGenerator(out, mangle_from_=False, policy=gen_policy).flatten(em, linesep=linesep)
    except Exception as exc:
        raise _unsendable(exc) from None
    return out.getvalue()


def _refuse_line_breaks(em: Message) -> None:
    """No header value carries a line break or control character (CR, LF, VT, FF, FS-RS, NEL,
    U+2028, U+2029; see `config.header_problem`), whatever got past `check`: one would add
    headers of its own (`Bcc:`), and the generator splits on all of them or refuses them only
    when the message is written. It is this message's permanent failure instead."""
    for name, value in em.items():
        why = header_problem(str(value))
        if why:
            raise ChannelError(
                ErrorKind.PERMANENT,
                f"the {name} header would contain a line break or control character: "
                f"{str(value)!r}",
                code=UNSENDABLE,
                hint="remove it from the campaign file or the lead's data",
            )
