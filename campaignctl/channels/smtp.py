"""SMTP channel: smtplib over STARTTLS, implicit TLS or plain, the same MIME as Gmail.

The password comes from the environment variable named by `password_env`; it is never in the
campaign file and never in a message. One connection is kept for the pass and probed with NOOP
before reuse, so a server that dropped an idle connection costs a reconnect, not a failure.

An address outside ASCII (`josé@example.org`) is sent with SMTPUTF8 (RFC 6531) when the relay
offers it; when it does not, the message fails for good: no retry would change the answer.

SMTP cannot reconcile: there is no way to ask a relay whether it accepted a message, so
`reconcile()` answers UNKNOWN and an uncertain message stays uncertain.
"""

from __future__ import annotations

import os
import smtplib
import ssl

from campaignctl.channels.base import (
    UNSENDABLE,
    ChannelError,
    CredentialsError,
    ErrorKind,
    Outgoing,
    Reconciled,
    Reconciliation,
    Sent,
)
from campaignctl.channels.mime import build_email, check_size, needs_utf8, to_bytes
from campaignctl.channels.providers.smtp import SmtpChannel
from campaignctl.config import Config

DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}
#: Replies that mean "not now" even though some servers send them as 5xx.
AUTH_CODES = frozenset({530, 534, 535, 538})


def _text(reply: bytes | str) -> str:
    s = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(s.split())


class SmtpRelayChannel:
    """One SMTP relay account."""

    def __init__(self, cfg: Config, name: str, ch: SmtpChannel) -> None:
        self.name = name
        self.kind = "email"
        self._ch = ch
        self._sender = cfg.sender
        self._port = ch.port or DEFAULT_PORTS[ch.security]
        self._ca_file = str(cfg.resolve(ch.ca_file)) if ch.ca_file else None
        self._password: str | None = None
        if ch.username:
            self._password = os.environ.get(ch.password_env or "")
            if not self._password:
                raise CredentialsError(
                    f"smtp channel {name!r}: environment variable {ch.password_env} is not set",
                    hint=f"export {ch.password_env}=... (the password of {ch.username}) and retry",
                )
        self._conn: smtplib.SMTP | None = None

    def _where(self) -> str:
        return f"smtp channel {self.name!r} ({self._ch.host}:{self._port})"

    def _connect(self) -> smtplib.SMTP:
        ctx = ssl.create_default_context(cafile=self._ca_file)
        timeout = self._ch.timeout.total_seconds()
        conn: smtplib.SMTP
        if self._ch.security == "ssl":
            conn = smtplib.SMTP_SSL(self._ch.host, self._port, timeout=timeout, context=ctx)
        else:
            conn = smtplib.SMTP(self._ch.host, self._port, timeout=timeout)
        try:
            if self._ch.security == "starttls":
                conn.ehlo()
                conn.starttls(context=ctx)
                conn.ehlo()
            if self._ch.username and self._password:
                conn.ehlo_or_helo_if_needed()
                # a relay that offers AUTH only once TLS is on
                if (
                    self._ch.security == "none"
                    and not conn.has_extn("auth")
                    and conn.has_extn("starttls")
                ):
                    raise ChannelError(
                        ErrorKind.AUTH,
                        f"{self._where()}: the relay offers login only after STARTTLS",
                        hint=self._starttls_hint(),
                    )
                conn.login(self._ch.username, self._password)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None:
            try:
                if self._conn.noop()[0] == 250:
                    return self._conn
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    def send(self, msg: Outgoing) -> Sent:
        """MAIL/RCPT/DATA on the kept connection; the Message-ID is the provider id."""
        envelope_from = self._sender.email
        if not envelope_from:
            raise ChannelError(
                ErrorKind.AUTH,
                f"{self._where()}: [sender] email is not set",
                hint="set email in [sender] of the campaign file",
            )
        em = build_email(msg, self._sender, max_size=self._ch.max_message_size)
        utf8 = needs_utf8(msg, self._sender)
        data = to_bytes(em, utf8=utf8, linesep="\r\n")
        check_size(data, self._ch.max_message_size, self.name, "\r\n")
        try:
            conn = self._connection()
            conn.ehlo_or_helo_if_needed()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise self._classify(exc, connecting=True) from None
        options: list[str] = []
        if utf8:
            if not conn.has_extn("smtputf8"):
                needed = msg.to if not msg.to.isascii() else envelope_from
                raise ChannelError(
                    ErrorKind.PERMANENT,
                    f"{self._where()}: server does not support SMTPUTF8, needed for {needed}",
                    code="smtputf8",
                    hint="send through a relay that offers SMTPUTF8 (Gmail's does), "
                    "or give the lead an ASCII address",
                )
            options = ["SMTPUTF8"] + (["BODY=8BITMIME"] if conn.has_extn("8bitmime") else [])
        self._check_relay_size(conn, data)
        try:
            conn.sendmail(envelope_from, [msg.to], data, mail_options=options)
        except (smtplib.SMTPException, OSError) as exc:
            if not isinstance(exc, smtplib.SMTPRecipientsRefused):
                self._drop()  # smtplib leaves the session in an unknown state
            raise self._classify(exc, connecting=False) from None
        return Sent(provider_id=str(em["Message-ID"]))

    def _check_relay_size(self, conn: smtplib.SMTP, data: bytes) -> None:
        """Refuse a message bigger than the relay says it takes (`SIZE n` in its EHLO reply,
        RFC 1870; 0 or no number: no limit given) before sending it: this message's permanent
        failure, not a transfer the relay would refuse at its end."""
        declared = conn.esmtp_features.get("size", "").strip()
        limit = int(declared) if declared.isdigit() else 0
        if limit and len(data) > limit:
            from campaignctl.attachments import human_size

            raise ChannelError(
                ErrorKind.PERMANENT,
                f"{self._where()}: the message is {human_size(len(data))}, over the "
                f"{human_size(limit)} the relay takes (SIZE {limit})",
                code=UNSENDABLE,
                hint=f"attach smaller files (or link to them); max_message_size = {limit} in "
                f"channels.{self.name} refuses such messages before they are built",
            )

    def _starttls_hint(self) -> str:
        return f'set channels.{self.name}.security = "starttls" in the campaign file'

    def _classify(self, exc: BaseException, *, connecting: bool) -> ChannelError:
        where = self._where()
        code = getattr(exc, "smtp_code", None)
        said = _text(getattr(exc, "smtp_error", b""))
        if self._ch.security == "none" and code == 530 and "starttls" in said.lower():
            # "530 Must issue a STARTTLS command first": a setting, not the sender or a password
            return ChannelError(
                ErrorKind.AUTH,
                f"{where}: {code} {said}",
                code=str(code),
                hint=self._starttls_hint(),
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(exc.recipients.values()))
            return self._by_code(code, f"{where}: recipient refused: {code} {_text(reply)}")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return CredentialsError(
                f"{where}: login refused: {exc.smtp_code} {_text(exc.smtp_error)}",
                code=str(exc.smtp_code),
                hint=f"check username and the password in ${self._ch.password_env}",
            )
        if isinstance(exc, smtplib.SMTPSenderRefused):
            text = f"{where}: sender {exc.sender} refused: {exc.smtp_code} {_text(exc.smtp_error)}"
            if exc.smtp_code == 552:
                # "exceeded storage allocation": at MAIL FROM, the size smtplib declared (RFC
                # 1870) is over the relay's limit; the message, not our sender
                return ChannelError(
                    ErrorKind.PERMANENT,
                    f"{where}: message refused: {exc.smtp_code} {_text(exc.smtp_error)}",
                    code=str(exc.smtp_code),
                    hint="attach smaller files (or link to them)",
                )
            if 500 <= exc.smtp_code < 600:
                # every message would fail the same way: stop the channel, not each message
                return ChannelError(
                    ErrorKind.AUTH,
                    text,
                    code=str(exc.smtp_code),
                    hint="check [sender] email: the relay must accept it for this username",
                )
            return self._by_code(exc.smtp_code, text)
        if isinstance(exc, (smtplib.SMTPConnectError, smtplib.SMTPHeloError)):
            # a refused greeting is about the relay, not about this message
            return ChannelError(
                ErrorKind.TRANSIENT,
                f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}",
                code=str(exc.smtp_code),
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._by_code(
                exc.smtp_code, f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}", sent=True
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return ChannelError(
                ErrorKind.AUTH,
                f"{where}: {exc}",
                hint=f"the server does not offer it: check channels.{self.name}.security and port",
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ChannelError(
                ErrorKind.AUTH,
                f"{where}: certificate not trusted: {exc.verify_message}",
                hint=f"use the relay's real host name, or set channels.{self.name}.ca_file",
            )
        # refused, reset, timed out, TLS failures: try again later. Once DATA may have been
        # written the relay may have the message, so the engine must not assume it did not.
        return ChannelError(
            ErrorKind.TRANSIENT,
            f"{where}: {type(exc).__name__}: {_text(str(exc)) or 'connection failed'}",
            maybe_sent=not connecting,
        )

    def _by_code(self, code: int, text: str, *, sent: bool = False) -> ChannelError:
        if code in AUTH_CODES:
            return ChannelError(
                ErrorKind.AUTH,
                text,
                code=str(code),
                hint=f"check username and the password in ${self._ch.password_env}",
            )
        if 400 <= code < 500:
            return ChannelError(ErrorKind.TRANSIENT, text, code=str(code))
        if 500 <= code < 600:
            return ChannelError(ErrorKind.PERMANENT, text, code=str(code))
        return ChannelError(ErrorKind.TRANSIENT, text, code=str(code), maybe_sent=sent)

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        """SMTP has no way to ask: the outcome stays unknown."""
        return Reconciliation(Reconciled.UNKNOWN)

    def close(self) -> None:
        self._drop()


def open(cfg: Config, name: str) -> SmtpRelayChannel:
    """The SMTP adapter for channel `name` (called by `open_channel`)."""
    ch = cfg.channels[name]
    assert isinstance(ch, SmtpChannel)
    return SmtpRelayChannel(cfg, name, ch)
