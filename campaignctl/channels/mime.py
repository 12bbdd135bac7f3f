"""RFC 5322 email built once for every email provider (Gmail, SMTP, outbox)."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

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


def build_email(msg: Outgoing, sender: Sender) -> EmailMessage:
    """multipart/alternative (text, plus HTML when there is some), threading and unsubscribe."""
    em = EmailMessage()
    em["From"] = (
        Address(display_name=sender.name, addr_spec=sender.email) if sender.email else sender.name
    )
    em["To"] = msg.to
    # A thread step keeps the first email's subject with `Re: `: Gmail only threads a message
    # whose subject matches, and mail clients expect it.
    em["Subject"] = reply_subject(msg.subject) if msg.in_reply_to else msg.subject or ""
    em["Date"] = format_datetime(msg.claimed_at)
    em["Message-ID"] = msg.rfc_message_id or new_message_id(sender.email)
    if sender.reply_to:
        em["Reply-To"] = sender.reply_to
    if msg.in_reply_to:
        em["In-Reply-To"] = msg.in_reply_to
        em["References"] = msg.in_reply_to
    unsub = []
    if sender.email:
        unsub.append(f"<mailto:{sender.email}?subject=unsubscribe>")
    if sender.unsubscribe_url:
        unsub.append(f"<{sender.unsubscribe_url}>")
        em["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if unsub:
        em["List-Unsubscribe"] = ", ".join(unsub)
    em["X-Campaignctl"] = f"{msg.campaign}/{msg.step}/{msg.id}"
    em.set_content(msg.text)
    if msg.html:
        em.add_alternative(msg.html, subtype="html")
    return em
