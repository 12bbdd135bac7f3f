"""The email every provider sends: what a mail client must find in it."""

from __future__ import annotations

from email import message_from_bytes, message_from_string, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaignctl.channels.mime import build_email, email_bytes
from campaignctl.config import Sender
from tests.support import outgoing

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
        "<https://sunrise.example/unsubscribe>, <mailto:ana@sunrise.example?subject=unsubscribe>"
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


# issue 9 #5: `To` was the whole address RFC 2047 encoded, which no parser reads as an address


def _no_defects(em) -> None:
    for name, value in em.items():
        assert not value.defects, (name, value.defects)


@pytest.mark.parametrize(
    "name", ['Dela Cruz, Juan "JD"', "José Muñoz, Jr.", 'María "Mía" O\'Brien, Sr.', ""]
)
def test_to_is_name_and_address_with_the_name_encoded_only(name):
    raw = email_bytes(outgoing(to="juan@example.com", to_name=name), SENDER)
    assert raw.isascii()
    em = message_from_bytes(raw, policy=policy.default)
    (to,) = em["To"].addresses
    assert (to.addr_spec, to.display_name) == ("juan@example.com", name)
    assert b"juan@example.com>" in raw or not name  # the addr-spec never encoded
    _no_defects(em)


def test_an_address_outside_ascii_is_raw_utf8_never_encoded():
    raw = email_bytes(
        outgoing(to="josé@example.org", to_name="José Muñoz, Jr.", subject="Hola, José"), SENDER
    )
    assert '"José Muñoz, Jr." <josé@example.org>'.encode() in raw  # RFC 6532
    assert b"=?utf-8?" not in raw.split(b"\n\n", 1)[0]
    # Python's bytes parser reads headers as ASCII; RFC 6532 headers are UTF-8
    em = message_from_string(raw.decode("utf-8"), policy=policy.default)
    (to,) = em["To"].addresses
    assert (to.addr_spec, to.display_name) == ("josé@example.org", "José Muñoz, Jr.")
    assert em["Subject"] == "Hola, José"
    body = em.get_body(("plain",))
    assert body is not None
    assert body.get_content().startswith("Hi Juan!")
    # the stdlib flags any local part outside ASCII (RFC 5322); nothing else is wrong
    assert [type(d).__name__ for d in em["To"].defects] == ["NonASCIILocalPartDefect"]
    del em["To"]
    _no_defects(em)


def test_a_name_never_breaks_the_header():
    raw = email_bytes(outgoing(to_name="Juan\r\nBcc: x@evil.example"), SENDER)
    em = message_from_bytes(raw, policy=policy.default)
    assert em["Bcc"] is None
    assert em["To"].addresses[0].display_name == "Juan Bcc: x@evil.example"


_NAME = st.text(
    st.characters(whitelist_categories=("L", "M", "N", "P", "S", "Zs")), max_size=40
).map(lambda s: " ".join(s.split()))


@settings(max_examples=200, deadline=None)
@given(name=_NAME, local=st.sampled_from(["juan", "juan.dela-cruz+x", "josé", "山田"]))
def test_email_bytes_round_trips_any_name(name, local):
    """email_bytes is build_email serialised: every name and address parses back as written."""
    msg = outgoing(to=f"{local}@example.com", to_name=name)
    raw = email_bytes(msg, SENDER)
    assert raw.isascii() == local.isascii()
    em = message_from_string(raw.decode("utf-8"), policy=policy.default)
    (to,) = em["To"].addresses
    assert (to.addr_spec, to.display_name) == (f"{local}@example.com", name)
    assert em["Message-ID"] == build_email(msg, SENDER)["Message-ID"]
    if local.isascii():
        _no_defects(em)
