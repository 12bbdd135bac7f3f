"""The email's bytes are the stdlib's: the one-line header fast path (`mime._Compat32`) folds
every value exactly as compat32 does, and a whole message is written byte for byte as the
stdlib's generator writes it."""

from __future__ import annotations

from email import policy
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from io import BytesIO
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from campaignctl.channels.mime import _COMPAT32, build_email, to_bytes
from campaignctl.config import Sender
from tests.support import outgoing

# mostly what headers hold (words, single spaces), and every edge the fast path must refuse:
# runs of spaces, tabs, line breaks, leading or trailing spaces, non-ASCII, control characters
TEXT = st.text(
    alphabet=st.sampled_from(
        list("abcXYZ019<>@.,;:=\"'()-_") + [" "] * 6 + list("\t\n\ré\x7f\x00")
    ),
    max_size=120,
)
NAMES = st.sampled_from(["To", "Subject", "X-Campaignctl", "List-Unsubscribe", "Message-ID"])


def outcome(p: policy.Compat32, name: str, value: str) -> bytes | type[Exception]:
    """The folded header, or the kind of exception refusing it."""
    try:
        return p.fold_binary(name, value)
    except Exception as exc:
        return type(exc)


@settings(max_examples=3000, deadline=None)
@given(name=NAMES, value=TEXT, linesep=st.sampled_from(["\n", "\r\n"]))
def test_the_fast_fold_is_compat32s_fold(name: str, value: str, linesep: str) -> None:
    ours, theirs = _COMPAT32.clone(linesep=linesep), policy.compat32.clone(linesep=linesep)
    assert outcome(ours, name, value) == outcome(theirs, name, value)


def test_values_around_the_line_length() -> None:
    for n in range(60, 90):
        for value in ("x" * n, "word " * (n // 5) + "end", f"<{'a' * n}@example.com>"):
            assert _COMPAT32.fold_binary("Subject", value) == policy.compat32.fold_binary(
                "Subject", value
            )
    header: Any = Header("Bienvenida, María", "utf-8")  # the stdlib takes a Header too
    assert _COMPAT32.fold_binary("Subject", header) == policy.compat32.fold_binary(
        "Subject", header
    )


def stdlib_bytes(em: Message) -> bytes:
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=policy.compat32).flatten(em, linesep="\r\n")
    return out.getvalue()


SENDER = Sender(
    name="Ana Cruz, Sunrise Realty",
    email="ana@sunrise.example",
    reply_to="ana+replies@sunrise.example",
    unsubscribe_url="https://sunrise.example/unsubscribe?lead=12345&campaign=welcome-to-the-club",
)


@settings(max_examples=300, deadline=None)
@given(subject=TEXT, to_name=TEXT, text=TEXT, html=st.none() | TEXT)
def test_whole_messages_are_the_stdlibs_bytes(
    subject: str, to_name: str, text: str, html: str | None
) -> None:
    fields = {"subject": subject, "to_name": to_name, "text": text or "x", "html": html}
    try:
        em = build_email(outgoing(**fields), SENDER)
        expected = stdlib_bytes(em)  # the multipart boundary is chosen here, then kept
    except Exception:
        return  # refused either way (line breaks in a header): tests/test_mime.py holds how
    assert to_bytes(em, utf8=False, linesep="\r\n") == expected
