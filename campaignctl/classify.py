"""What came back, classified: replies, opt-outs, bounces and delivery statuses as `Inbound` values.

Pure functions of their input: SMS/WhatsApp bodies, raw RFC 5322 emails (what Gmail's
`format=raw` returns) and Twilio Message resources (the REST API's JSON) become `Inbound`
values, given what we know about our own sends (`Known`). Nothing here reads or writes the
store: `inbound.record` records the values, `suppression` applies their effects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaignctl.config import Config


class Kind(StrEnum):
    """Event kinds. reply, optout and bounce are the ones `stop_on` can name."""

    REPLY = "reply"
    OPTOUT = "optout"
    OPTIN = "optin"
    HELP = "help"
    BOUNCE = "bounce"
    AUTOREPLY = "autoreply"  # out-of-office and other automatic answers: recorded, never a stop
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


# ---------------------------------------------------------------- SMS / WhatsApp keywords

# The carrier and CTIA keyword sets Twilio's Advanced Opt-Out honours.
#: The carrier keywords Twilio honours, and the usual words where campaigns speak Spanish
#: (ALTO, BAJA) or French (ARRET, ARRÊT: Canada's carriers require it beside STOP). `check`'s
#: opt-out lint accepts these words, so a lead who answers what the message says is opted out.
OPTOUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
    | {"ALTO", "BAJA", "ARRET", "ARRÊT"}
)
OPTIN_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Leading/trailing anything that is not a letter or digit: spaces, punctuation, emoji.
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def keyword(body: str | None) -> str:
    """The body as one upper-case word with its surrounding spaces and punctuation removed."""
    return _EDGES.sub("", body or "").upper()


def classify_text(body: str | None) -> Kind:
    """optout, optin or help for a message that is exactly one keyword; reply otherwise."""
    word = keyword(body)
    if word in OPTOUT_WORDS:
        return Kind.OPTOUT
    if word in OPTIN_WORDS:
        return Kind.OPTIN
    if word in HELP_WORDS:
        return Kind.HELP
    return Kind.REPLY


# ---------------------------------------------------------------- what we sent


@dataclass(frozen=True)
class SentRef:
    """One of our sent messages, as classification needs it."""

    message_id: int  # the message row
    lead_id: int
    channel: str
    sent_at: datetime | None = None


@dataclass
class Known:
    """Our sends, indexed the ways inbound data refers to them."""

    by_rfc_id: dict[str, SentRef] = field(default_factory=dict)  # '<...@domain>' Message-ID
    by_thread: dict[str, SentRef] = field(default_factory=dict)  # provider thread id (Gmail)
    by_provider_id: dict[str, SentRef] = field(default_factory=dict)  # Twilio sid, Gmail id


# ---------------------------------------------------------------- inbound values


@dataclass(frozen=True)
class Inbound:
    """One thing that came back, classified but not yet recorded.

    `lead_id` is set when the data points at one of our messages; otherwise `address` (an email
    or an E.164 phone) identifies the lead and `record` looks it up.
    """

    kind: Kind
    channel: str
    source_id: str
    occurred_at: datetime
    lead_id: int | None = None
    message_id: int | None = None
    address: str | None = None
    source: str = "inbound"  # what OptOut.source becomes: keyword | unsubscribe | bounce | ...
    error_code: str | None = None
    error: str | None = None
    permanent: bool = False  # a delivery error that will not go away by retrying
    detail: dict[str, Any] = field(default_factory=dict)


def _source_id(kind: Kind, provider_id: str) -> str:
    return f"{kind.value}:{provider_id}"


# ---------------------------------------------------------------- email

_MSGID = re.compile(r"<[^<>\s@]+@[^<>\s]+>")
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]*>")
_UNSUBSCRIBE = re.compile(r"(please\s+)?unsubscribe(\s+me)?", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedEmail:
    """The parts of an email that classification looks at."""

    message_id: str | None
    from_addr: str
    to_addrs: tuple[str, ...]
    subject: str
    date: datetime | None
    thread_refs: tuple[str, ...]  # In-Reply-To and References, in order
    carried_refs: frozenset[str]  # every Message-ID found anywhere else (attachments, body)
    first_line: str
    is_bounce: bool
    is_auto: bool
    failed_recipients: tuple[str, ...]
    dsn_actions: tuple[str, ...]  # per-recipient `Action:` values of a DSN (failed, delayed, ...)
    dsn_status: str | None  # first per-recipient `Status:` (5.1.1)
    dsn_diagnostic: str | None


def _addr(value: str | None) -> str:
    pairs = getaddresses([value or ""])
    return pairs[0][1].strip().lower() if pairs and pairs[0][1] else ""


def _text_of(part: Message) -> str:
    try:
        if isinstance(part, EmailMessage):
            content = part.get_content()
            if isinstance(content, str):
                return content
        raw = part.get_payload(decode=True)
    except (LookupError, ValueError, KeyError):
        raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode(part.get_content_charset() or "utf-8", errors="replace")
    return raw if isinstance(raw, str) else ""


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse RFC 5322 bytes (Gmail's `format=raw`, an IMAP fetch, a file) for classification."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    own_id = (msg.get("Message-ID") or "").strip() or None
    thread_refs = tuple(_MSGID.findall(f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}"))
    carried: set[str] = set(_MSGID.findall(str(msg.get("X-Original-Message-ID", ""))))
    first_line = first_html = ""
    dsn_actions: list[str] = []
    dsn_status = dsn_diagnostic = None
    # walk() descends into attached originals (message/rfc822) and DSN status blocks too.
    for part in msg.walk():
        if part is not msg:
            for header in ("Message-ID", "In-Reply-To", "References", "X-Original-Message-ID"):
                carried.update(_MSGID.findall(str(part.get(header, ""))))
            action = part.get("Action")
            if action:
                dsn_actions.append(str(action).strip().lower())
                dsn_status = dsn_status or (str(part.get("Status", "")).strip() or None)
                diag = part.get("Diagnostic-Code")
                dsn_diagnostic = dsn_diagnostic or (" ".join(str(diag).split()) if diag else None)
        if part.is_multipart() or part.get_content_maintype() not in ("text", "message"):
            continue
        if part.get_content_type() in ("message/rfc822", "message/delivery-status"):
            continue
        text = _text_of(part)
        carried.update(_MSGID.findall(text))
        if part.get_content_type() == "text/plain" and not first_line:
            first_line = _first_line(text)
        elif part.get_content_type() == "text/html" and not first_html:
            first_html = _first_line(_TAGS.sub("\n", text))
    carried.discard(own_id or "")
    from_addr = _addr(msg.get("From"))
    content_type = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "") or "").lower()
    failed = tuple(a.lower() for _n, a in getaddresses([msg.get("X-Failed-Recipients", "")]) if a)
    is_bounce = (
        from_addr.split("@", 1)[0] in _BOUNCE_SENDERS
        or bool(failed)
        or (content_type == "multipart/report" and report_type == "delivery-status")
    )
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    is_auto = (
        (auto != "no" and auto != "")
        or "X-Autoreply" in msg
        or "X-Autorespond" in msg
        or str(msg.get("Precedence", "")).lower() in ("auto_reply", "bulk", "junk")
    )
    date = None
    if msg.get("Date"):
        try:
            date = parsedate_to_datetime(str(msg["Date"]))
        except (TypeError, ValueError):
            date = None
        if date is not None and date.tzinfo is None:
            date = None  # a zone-less Date cannot be compared with our sends
    return ParsedEmail(
        message_id=own_id,
        from_addr=from_addr,
        to_addrs=tuple(
            a.lower()
            for _n, a in getaddresses([str(msg.get("To", "")), str(msg.get("Cc", ""))])
            if a
        ),
        subject=str(msg.get("Subject", "")),
        date=date,
        thread_refs=thread_refs,
        carried_refs=frozenset(carried),
        first_line=first_line or first_html,  # an HTML-only mail has no text part
        is_bounce=is_bounce,
        is_auto=is_auto,
        failed_recipients=failed,
        dsn_actions=tuple(dsn_actions),
        dsn_status=dsn_status,
        dsn_diagnostic=dsn_diagnostic,
    )


def our_addresses(cfg: Config) -> tuple[str, ...]:
    """The addresses our own emails come from, for `classify_email(ours=...)`."""
    return tuple(a.lower() for a in (cfg.sender.email, cfg.sender.reply_to) if a)


def is_unsubscribe(subject: str, first_line: str) -> bool:
    """'unsubscribe' (or 'unsubscribe me') as the subject, ignoring Re:, or as the first line."""
    clean_subject = _EDGES.sub("", _REPLY_PREFIX.sub("", subject))
    return bool(
        _UNSUBSCRIBE.fullmatch(clean_subject) or _UNSUBSCRIBE.fullmatch(_EDGES.sub("", first_line))
    )


def classify_email(
    raw: bytes,
    *,
    channel: str,
    ours: Collection[str],
    known: Known,
    now: datetime,
    provider_id: str | None = None,
    thread_id: str | None = None,
    received_at: datetime | None = None,
) -> Inbound | None:
    """Classify one received email; None when it is nothing we act on.

    `ours` are our own addresses (sender email, reply-to); `provider_id` and `thread_id` are the
    provider's ids of this message and its thread (Gmail), `received_at` its arrival time.
    Order matters: a bounce is a bounce even when it quotes "unsubscribe"; an unsubscribe in a
    thread is an opt-out rather than a reply.
    """
    p = parse_email(raw)
    our = {a.lower() for a in ours if a}
    if p.from_addr in our:
        return None  # our own send, seen in the mailbox or the thread
    when = p.date or received_at or now
    key = provider_id or p.message_id or hashlib.sha256(raw).hexdigest()[:32]

    thread_ref = next((known.by_rfc_id[r] for r in p.thread_refs if r in known.by_rfc_id), None)
    if thread_ref is None and thread_id is not None:
        thread_ref = known.by_thread.get(thread_id)

    def about(kind: Kind, ref: SentRef | None, **kw: Any) -> Inbound:
        """An Inbound about our message `ref` (or, without one, found by address later)."""
        return Inbound(
            kind=kind,
            channel=ref.channel if ref else channel,
            source_id=_source_id(kind, key),
            occurred_at=when,
            lead_id=ref.lead_id if ref else None,
            message_id=ref.message_id if ref else None,
            **kw,
        )

    if p.is_bounce:
        if p.dsn_actions and "failed" not in p.dsn_actions:
            return None  # a "delayed" or "delivered" report: the server is still trying
        carried = [r for r in (*p.thread_refs, *sorted(p.carried_refs)) if r in known.by_rfc_id]
        ref = known.by_rfc_id[carried[0]] if carried else None
        if ref is None and not p.failed_recipients:
            return None  # a bounce of something we did not send
        return about(
            Kind.BOUNCE,
            ref,
            address=None if ref else p.failed_recipients[0],
            source="bounce",
            error_code=p.dsn_status,
            error=p.dsn_diagnostic or "bounced",
            permanent=True,
            detail={"from": p.from_addr, "failed_recipients": list(p.failed_recipients)},
        )

    detail = {"from": p.from_addr, "subject": p.subject}
    if is_unsubscribe(p.subject, p.first_line):
        return about(
            Kind.OPTOUT, thread_ref, address=p.from_addr, source="unsubscribe", detail=detail
        )
    if thread_ref is None:
        return None  # mail that is not about a thread we started
    if thread_ref.sent_at is not None and when < thread_ref.sent_at:
        return None  # an earlier message in the thread, not an answer to ours
    kind = Kind.AUTOREPLY if p.is_auto else Kind.REPLY
    return about(kind, thread_ref, address=p.from_addr, detail=detail)


# ---------------------------------------------------------------- Twilio

# Twilio error codes on undelivered/failed messages that retrying will not fix
# (https://www.twilio.com/docs/api/errors). 30003 (handset unreachable) and 30008 (unknown)
# are left out on purpose: a phone that is off today may answer tomorrow.
TWILIO_PERMANENT = {
    "21211": "invalid 'To' phone number",
    "21408": "permission to send to this region is not enabled",
    "21610": "recipient has opted out (replied STOP)",
    "21612": "the 'To' number cannot be reached by this sender",
    "21614": "'To' number is not a mobile number",
    "30004": "message blocked by the recipient or carrier",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "63003": "WhatsApp: the recipient's number is not on WhatsApp",
    "63016": "WhatsApp: outside the 24-hour window; send an approved template",
    "63024": "WhatsApp: invalid message recipient",
}
TWILIO_UNSUBSCRIBED = "21610"
#: The Twilio statuses recorded as events; the others (queued, accepted, scheduled, sending,
#: sent) say no more than the message's own `sent` state.
TWILIO_FINAL = {
    "delivered": Kind.DELIVERED,
    "read": Kind.DELIVERED,  # WhatsApp: read implies delivered
    "undelivered": Kind.UNDELIVERED,
    "failed": Kind.FAILED,
}


def strip_whatsapp(address: str | None) -> str:
    """`whatsapp:+639171234567` -> `+639171234567`."""
    a = (address or "").strip()
    return a[len("whatsapp:") :] if a.lower().startswith("whatsapp:") else a


def _twilio_time(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else fallback
    if isinstance(value, str) and value:
        try:
            parsed = parsedate_to_datetime(value)  # the REST API's RFC 2822 dates
        except (TypeError, ValueError):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return fallback
        return parsed if parsed.tzinfo else fallback
    return fallback


def twilio_webhook_resource(form: Mapping[str, str], *, inbound: bool) -> dict[str, Any]:
    """A Twilio webhook's form (a StatusCallback, or an incoming message) as the Message
    resource's REST JSON names, so `classify_twilio` reads it as it reads what `sync` lists.
    A webhook carries no date: the time it arrives stands for it."""
    return {
        "sid": form.get("MessageSid") or form.get("SmsSid") or "",
        "direction": "inbound" if inbound else "outbound-api",
        "from": form.get("From"),
        "to": form.get("To"),
        "body": form.get("Body") if inbound else None,
        "status": "received" if inbound else (form.get("MessageStatus") or form.get("SmsStatus")),
        "error_code": form.get("ErrorCode") or None,
        "error_message": form.get("ErrorMessage") or None,
        "messaging_service_sid": form.get("MessagingServiceSid") or None,
        "date_sent": None,
        "date_created": None,
    }


def classify_twilio(
    resource: Mapping[str, Any], *, channel: str, known: Known, now: datetime
) -> Inbound | None:
    """Classify one Twilio Message resource (REST JSON); None when there is nothing to record.

    Inbound messages become keyword events or replies for the lead whose phone sent them;
    our outbound messages (matched by sid) in a final state become delivery events.
    """
    sid = str(resource.get("sid") or "")
    if not sid:
        return None
    direction = str(resource.get("direction") or "")
    when = _twilio_time(resource.get("date_sent") or resource.get("date_created"), now)
    if direction == "inbound":
        body = str(resource.get("body") or "")
        kind = classify_text(body)
        return Inbound(
            kind=kind,
            channel=channel,
            source_id=_source_id(kind, sid),
            occurred_at=when,
            address=strip_whatsapp(resource.get("from")),
            source="keyword",
            detail={"body": body, "to": strip_whatsapp(resource.get("to"))},
        )
    ref = known.by_provider_id.get(sid)
    status = str(resource.get("status") or "").lower()
    final = TWILIO_FINAL.get(status)
    if ref is None or final is None:
        return None  # not ours, or still on its way (queued, sending, sent)
    code = resource.get("error_code")
    code_s = str(code) if code not in (None, "", 0) else None
    error = None
    if code_s:
        error = TWILIO_PERMANENT.get(code_s) or str(
            resource.get("error_message") or f"Twilio error {code_s}"
        )
    return Inbound(
        kind=final,
        channel=ref.channel,
        # the status word, not the kind: "read" is a delivered event of its own, after
        # "delivered"; the same shape whether sync or the status callback saw it first
        source_id=f"{status}:{sid}",
        occurred_at=when,
        lead_id=ref.lead_id,
        message_id=ref.message_id,
        source="provider",
        error_code=code_s,
        error=error,
        permanent=code_s in TWILIO_PERMANENT,
        detail={"status": status},
    )


# ---------------------------------------------------------------- addresses


def normalise_address(address: str, default_region: str | None = None) -> str | None:
    """A lowercase email, or an E.164 phone; None when it is neither."""
    a = strip_whatsapp(address)
    if "@" in a:
        return a.lower()
    import phonenumbers

    try:
        num = phonenumbers.parse(a, default_region.upper() if default_region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
