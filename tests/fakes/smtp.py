"""A loopback SMTP server (aiosmtpd) that records what it accepts and can refuse on demand.

`security` is "none", "starttls" (STARTTLS required before MAIL) or "ssl" (implicit TLS); both
TLS modes use a self-signed certificate for 127.0.0.1 made with `cryptography`, whose PEM the
client trusts through the channel's `ca_file`. With `users`, AUTH (PLAIN/LOGIN) is required and a
wrong password gets 535. `smtputf8=False` makes a relay that does not offer SMTPUTF8 (RFC 6531).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, message_from_string, policy
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.fakes.http import free_port

DROP = "drop the connection"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: Message = field(repr=False)
    login: str | None
    mail_options: list[str] = field(default_factory=list)


def self_signed_cert(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate and key for `host` (IP and `localhost` in its SANs), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _parse(data: bytes) -> Message:
    """Headers read as UTF-8 (RFC 6532); Python's bytes parser reads them as ASCII."""
    try:
        return message_from_string(data.decode("utf-8"), policy=policy.default)
    except UnicodeDecodeError:
        return message_from_bytes(data, policy=policy.default)


class FakeSmtp:
    """aiosmtpd on 127.0.0.1 with recording and failure injection."""

    def __init__(
        self,
        folder: Path,
        *,
        security: str = "none",
        users: dict[str, str] | None = None,
        smtputf8: bool = True,
        size_limit: int | None = None,
    ) -> None:
        self.security = security
        self.users = users or {}
        self.received: list[Received] = []
        self.auth_attempts: list[str] = []
        self.refused_recipients: dict[str, str] = {}  # address -> reply, e.g. "550 5.1.1 ..."
        self._fail: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA": []}
        self.cert_file: Path | None = None
        kwargs: dict[str, Any] = {}
        if security != "none":
            self.cert_file, key_file = self_signed_cert(folder)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert_file, key_file)
            if security == "ssl":
                kwargs["ssl_context"] = ctx
            else:
                kwargs.update(tls_context=ctx, require_starttls=True)
        if self.users:
            # aiosmtpd only counts STARTTLS as TLS; on implicit TLS the socket already is
            kwargs.update(authenticator=self._authenticate, auth_require_tls=security == "starttls")
        if size_limit is not None:  # advertised as `SIZE n`; a bigger MAIL FROM SIZE= gets 552
            kwargs["data_size_limit"] = size_limit
        self.port = free_port()
        self.controller = Controller(
            self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8, **kwargs
        )

    def fail_next(self, stage: str, reply: str) -> None:
        """Answer the next MAIL, RCPT or DATA command with `reply` (e.g. "451 4.3.0 busy")."""
        self._fail[stage.upper()].append(reply)

    def drop_next_data(self) -> None:
        """Take the next message and hang up before answering DATA: the client cannot know."""
        self._fail["DATA"].append(DROP)

    # aiosmtpd handler hooks

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8")
        self.auth_attempts.append(login)
        ok = self.users.get(login) == auth_data.password.decode("utf-8")
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self._fail["MAIL"]:
            return self._fail["MAIL"].pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self._fail["RCPT"]:
            return self._fail["RCPT"].pop(0)
        if address.lower() in self.refused_recipients:
            return self.refused_recipients[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self._fail["DATA"].pop(0) if self._fail["DATA"] else None
        if reply is not None and reply != DROP:
            return reply
        data = envelope.original_content or envelope.content
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=data,
                message=_parse(data),
                login=session.auth_data if isinstance(session.auth_data, str) else None,
                mail_options=list(envelope.mail_options),
            )
        )
        if reply == DROP:
            server.transport.close()  # accepted, but the answer never leaves
        return "250 2.0.0 Message accepted for delivery"

    def start(self) -> FakeSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
