"""The email every provider sends: what a mail client must find in it."""

from __future__ import annotations

from email import message_from_bytes, policy

from campaignctl.channels.mime import build_email
from campaignctl.config import Sender
from tests.fakes.fixtures import outgoing

SENDER = Sender(
    name="Ana Cruz, Sunrise Realty",
    email="ana@sunrise.example",
    reply_to="ana+replies@sunrise.example",
    unsubscribe_url="https://sunrise.example/unsubscribe",
)


def parsed(**overrides: object):
    raw = build_email(outgoing(**overrides), SENDER).as_bytes()
    assert raw.isascii()  # 7-bit safe for any SMTP server: QP bodies, RFC 2047 headers
    return raw, message_from_bytes(raw, policy=policy.default)


def test_text_and_html_alternatives_with_unicode():
    raw, em = parsed(subject="Bienvenida, María 🏡", text="Hola María ñ\n", html="<p>María</p>")
    assert em.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in em.iter_parts()] == ["text/plain", "text/html"]
    assert em["Subject"] == "Bienvenida, María 🏡"
    assert em.get_body(("plain",)).get_content() == "Hola María ñ\n"
    assert em.get_body(("html",)).get_content() == "<p>María</p>"
    assert raw.count(b"MIME-Version") == 1
    assert b"Content-Transfer-Encoding: quoted-printable" in raw


def test_headers_a_mail_client_and_gmail_rely_on():
    _, em = parsed(rfc_message_id="<m1@sunrise.example>")
    assert em["From"].addresses[0].display_name == "Ana Cruz, Sunrise Realty"
    assert em["From"].addresses[0].addr_spec == "ana@sunrise.example"
    assert em["Reply-To"] == "ana+replies@sunrise.example"
    assert em["Message-ID"] == "<m1@sunrise.example>"
    assert em["List-Unsubscribe"] == (
        "<mailto:ana@sunrise.example?subject=unsubscribe>, <https://sunrise.example/unsubscribe>"
    )
    assert em["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert em["Date"].datetime.isoformat() == "2026-11-21T08:00:00+00:00"


def test_thread_step_replies_in_the_thread():
    _, em = parsed(subject="Welcome, Juan!", in_reply_to="<first@sunrise.example>")
    assert em["Subject"] == "Re: Welcome, Juan!"
    assert em["In-Reply-To"] == em["References"] == "<first@sunrise.example>"


def test_text_only_message_is_a_single_part():
    _, em = parsed(html=None, text="Plain only\n")
    assert em.get_content_type() == "text/plain"
    assert em.get_content() == "Plain only\n"


def test_long_unicode_lines_survive_folding():
    line = "Mañana " * 60
    _, em = parsed(text=line + "\n", subject=("Ñ " * 50).strip())
    assert em.get_body(("plain",)).get_content() == line + "\n"
    assert em["Subject"] == ("Ñ " * 50).strip()
