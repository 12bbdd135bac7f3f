"""The seam between the engine and the providers.

The engine hands a channel an `Outgoing` and gets back `Sent`, or a `ChannelError` whose `kind`
says what to do next. Nothing above this seam imports a provider SDK; each adapter turns its
vendor's exceptions into ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from campaignctl.attachments import Attachment
from campaignctl.errors import CampaignctlError, ExitCode


@dataclass(frozen=True)
class Outgoing:
    """One message to send, exactly as rendered and recorded before the provider is called."""

    id: int  # message row id; outbox names its files by it
    campaign: str
    step: str
    channel: str  # channel name in the campaign file
    kind: str  # email | sms | whatsapp
    to: str  # email address, or E.164 phone (the channel adds any `whatsapp:` prefix)
    text: str
    claimed_at: datetime
    subject: str | None = None
    html: str | None = None
    rfc_message_id: str | None = None  # '<...@domain>' for email, generated and stored before send
    in_reply_to: str | None = None  # Message-ID of the thread's first email
    thread_id: str | None = None  # provider's thread id (Gmail) of that first email
    content_sid: str | None = None
    content_variables: dict[str, str] = field(default_factory=dict)
    to_name: str | None = None  # the lead's name, for email's `To: "First Last" <address>`
    unsubscribe_url: str | None = None  # rendered for this lead; None: the sender's as written
    test: bool = (
        False  # `send --test-to`: email gets `X-Campaignctl-Test: 1`; `id` is a test_send's
    )
    attachments: tuple[Attachment, ...] = ()  # email: files read when the MIME is built


@dataclass(frozen=True)
class Sent:
    """The provider accepted the message."""

    provider_id: str
    thread_id: str | None = None


class Reconciled(StrEnum):
    SENT = "sent"  # the provider has it: record as sent
    NOT_SENT = "not_sent"  # the provider never got it: safe to send again
    UNKNOWN = "unknown"  # the channel cannot tell: stays uncertain


@dataclass(frozen=True)
class Reconciliation:
    outcome: Reconciled
    provider_id: str | None = None
    thread_id: str | None = None


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # 429, 5xx, timeouts: back to pending with backoff
    PERMANENT = "permanent"  # this message fails; the others go on
    AUTH = "auth"  # no message can go until a person acts (credentials): stop the channel (exit 78)
    OPTED_OUT = "opted_out"  # recipient unsubscribed at the provider: fail and mark opted out


#: `ChannelError.code` of a message that could not be built or serialised: permanent, and the
#: provider was never asked, so the circuit breaker does not count it.
UNSENDABLE = "unsendable"


class ChannelError(CampaignctlError):
    """A provider refused or failed a message, classified for the engine."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message, hint)
        self.kind = kind
        self.code = code
        self.retry_after = retry_after
        # True when the request may have reached the provider before it failed (a timeout or a
        # dropped connection after the message was written): reconcile before any retry.
        self.maybe_sent = maybe_sent
        self.exit_code = {
            ErrorKind.AUTH: ExitCode.CONFIG,  # retrying will not help: a person must act
            ErrorKind.TRANSIENT: ExitCode.TEMPFAIL,
        }.get(kind, ExitCode.FAILED)


class CredentialsError(ChannelError):
    """Credentials missing, unreadable, refused or revoked: the channel stops and the command
    exits 78 (a person must run `campaignctl auth ...` or fix the environment), never 75,
    which cron and systemd treat as "try again later"."""

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(ErrorKind.AUTH, message, code=code, hint=hint)


@runtime_checkable
class Channel(Protocol):
    """What every provider adapter offers the engine."""

    name: str
    kind: str

    def send(self, msg: Outgoing) -> Sent:
        """Hand the message to the provider; raise ChannelError when it is refused."""
        ...

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        """Ask the provider whether a message whose outcome we lost went out."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class BatchReconciler(Protocol):
    """A channel that can settle many lost outcomes with one request (Twilio lists messages,
    Gmail searches for many Message-IDs)."""

    def reconcile_many(self, msgs: Sequence[Outgoing]) -> dict[int, Reconciliation]:
        """Each message's answer by `Outgoing.id`; a message left out stays uncertain."""
        ...


@dataclass(frozen=True)
class Received:
    """One thing read back from a provider, not yet classified (see `inbound`)."""

    provider_id: str  # Gmail message id, Twilio sid
    raw: bytes | None = None  # an RFC 5322 email (Gmail `format=raw`)
    resource: dict[str, object] | None = None  # a Twilio Message resource, REST JSON names
    thread_id: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True)
class Fetched:
    """What one `fetch_inbound` read, and the cursor to store for the next call."""

    items: list[Received]
    cursor: str
    more: bool = False  # stopped at the page cap: the next sync goes on from `cursor`


@runtime_checkable
class Inbox(Protocol):
    """A channel that can read what came back (replies, bounces, statuses); outbox and SMTP
    cannot."""

    name: str
    kind: str

    def fetch_inbound(self, cursor: str | None, now: datetime) -> Fetched:
        """Everything since `cursor` (the value this method returned last time, or None for a
        first sync), and the cursor to store for the next call; a bounded number of pages per
        call (`more` when some are left). Overlap is fine: recording is idempotent."""
        ...
