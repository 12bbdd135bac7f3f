"""Random campaign files to `check`, random CSV files to `leads import --dry-run`.

Whatever the input, the answer is an exit code in {0, 1, 2} and plain lines: never "internal
error" and never a traceback. Campaign files are built from the real keys with plausible and
garbage values (so most of them get past TOML and reach every later check), plus raw text;
CSV files are random rows and random bytes. About 2,200 examples, well under a minute.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from campaignctl.cli import app
from tests.support import MINIMAL_TOML

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # the same examples on every run and machine: CI stays reproducible
    derandomize=True,
)

# ---------------------------------------------------------------- values

_garbage: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=2),
)


def _maybe(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes garbage of any type."""
    return st.integers(0, 40).flatmap(lambda n: _garbage if n == 0 else plausible)


_duration = _maybe(
    st.one_of(
        st.sampled_from(["0s", "20s", "1h30m", "3d", "2w", "99999999999999999w", "1y", "", "-1d"]),
        st.from_regex(r"[0-9]{1,20}[smhdw]", fullmatch=True),
    )
)
_names = st.sampled_from(["email", "sms", "whatsapp", "wa", "x", "bad name", ""])
_template_text = st.sampled_from(
    [
        "Hi {{ lead.first_name | default('there') }}",
        "Hi {{ lead.first_name }}",
        "{% if lead.beds %}{{ lead.beds }}{% endif %}",
        "{{ lead.budget|int + 1 }}",
        "{% for x in %}",
        "{{ 1/0 }}",
        "{{ '%s' % lead }}",
        "{{ range(10**9)|list }}",
        "{{ lead.email|upper }} STOP",
        "{{",
        "}}",
        "",
    ]
)
_expression = _maybe(
    st.one_of(
        st.sampled_from(
            [
                "status == 'new'",
                "'buyer' in tags",
                "lead.budget|int > 5",
                "status ==",
                "(" * 300 + "1" + ")" * 300,
                " or ".join(["status == 'x'"] * 400),
                "lead.x.y.z",
                "1/0",
                "",
            ]
        ),
        st.text(max_size=40),
    )
)

_channel_values: dict[str, st.SearchStrategy[Any]] = {
    "provider": _maybe(st.sampled_from(["outbox", "gmail", "smtp", "twilio", "ses"])),
    "kind": _maybe(st.sampled_from(["email", "sms", "whatsapp", "fax"])),
    "daily_limit": _maybe(st.integers(min_value=-5, max_value=10**12)),
    "hourly_limit": _maybe(st.integers(min_value=-5, max_value=10**6)),
    "per_second": _maybe(st.floats(allow_nan=True, allow_infinity=True)),
    "min_interval": _duration,
    "jitter": _duration,
    "window": _maybe(
        st.one_of(
            st.sampled_from(["08:00-18:00", "21:00-08:00", "00:00-24:00", "25:00-1:00", "8-18"]),
            st.text(max_size=12),
        )
    ),
    "days": _maybe(
        st.one_of(
            st.sampled_from(["mon-fri", "sat,sun", "*", "mon-fri-sun", "monkey", "fri-mon"]),
            st.text(max_size=12),
        )
    ),
    "max_attempts": _maybe(st.integers(min_value=-2, max_value=10**9)),
    "retry_backoff": _duration,
    "path": _maybe(st.sampled_from(["outbox", "out/box", ""])),
    "host": _maybe(st.sampled_from(["127.0.0.1", "smtp.example.com", ""])),
    "port": _maybe(st.integers(min_value=-1, max_value=70000)),
    "security": _maybe(st.sampled_from(["starttls", "ssl", "none", "tls"])),
    "username": _maybe(st.text(max_size=8)),
    "password_env": _maybe(st.sampled_from(["SMTP_PASSWORD", ""])),
    "from": _maybe(st.sampled_from(["+15005550006", "whatsapp:+15005550006", "nope", ""])),
    "messaging_service_sid": _maybe(st.text(max_size=8)),
    "timeout": _duration,
    "credentials": _maybe(st.sampled_from(["token.json", ""])),
    "service_account": _maybe(st.sampled_from(["sa.json"])),
    "delegate": _maybe(st.sampled_from(["ana@x.com"])),
}
_step_values: dict[str, st.SearchStrategy[Any]] = {
    "name": _maybe(st.sampled_from(["hello", "nudge", "hello", "", "x y"])),
    "channel": _maybe(_names),
    "delay": _duration,
    "subject": _maybe(_template_text),
    "body": _maybe(_template_text),
    "template": _maybe(st.sampled_from(["missing.j2", "t.j2", ""])),
    "thread": _maybe(st.booleans()),
    "content_sid": _maybe(st.sampled_from(["HX123", ""])),
    "content_variables": _maybe(
        st.dictionaries(st.sampled_from(["1", "2"]), _template_text, max_size=2)
    ),
}
_variant_values: dict[str, st.SearchStrategy[Any]] = {
    "name": _maybe(st.sampled_from(["a", "b", "a"])),
    "weight": _maybe(st.floats(allow_nan=True, allow_infinity=True)),
    "subject": _maybe(_template_text),
    "body": _maybe(_template_text),
}
_campaign_values: dict[str, st.SearchStrategy[Any]] = {
    "kind": _maybe(st.sampled_from(["blast", "sequence", "drip"])),
    "status": _maybe(st.sampled_from(["draft", "active", "paused", "completed", "archived"])),
    "audience": _expression,
    "stop_on": _maybe(st.lists(st.sampled_from(["reply", "optout", "bounce", "x"]), max_size=3)),
    "priority": _maybe(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    "start_at": _maybe(st.sampled_from(["2026-01-01T00:00:00Z", "yesterday"])),
    "description": _maybe(st.text(max_size=20)),
}
_top_values: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "settings": {
        "database": _maybe(
            st.sampled_from(["campaignctl.db", "postgresql://u@h/d", "", "sqlite:///x.db"])
        ),
        "timezone": _maybe(st.sampled_from(["UTC", "Asia/Manila", "Mars/Olympus", ""])),
        "default_region": _maybe(st.sampled_from(["PH", "US", "XX", ""])),
    },
    "sender": {
        "name": _maybe(st.sampled_from(["Ana Cruz", "Ana\r\nBcc: x@y.z", ""])),
        "email": _maybe(st.sampled_from(["ana@x.com", "not-an-email", "josé@example.org"])),
        "reply_to": _maybe(st.sampled_from(["ana@x.com", ""])),
        "postal_address": _maybe(st.text(max_size=20)),
        "unsubscribe_url": _maybe(
            st.sampled_from(["https://x/u", "https://x/u?e={{ lead.email }}", "{{"])
        ),
    },
    "daemon": {"tick": _duration, "sync_interval": _duration},
}


def _table(
    values: dict[str, st.SearchStrategy[Any]], *required: str
) -> st.SearchStrategy[dict[str, Any]]:
    """A table with the `required` keys (mostly), a random subset of the other real keys, and
    now and then an unknown one."""
    real, unknown = st.sampled_from(list(values)), st.sampled_from(["dealy", "unknown_key"])
    names = st.integers(0, 30).flatmap(lambda n: unknown if n == 0 else real)
    others = st.lists(names, unique=True, max_size=5)
    keys = st.tuples(st.lists(st.sampled_from(required or ("",)), unique=True), others)
    return keys.flatmap(
        lambda ks: st.fixed_dictionaries(
            {
                k: values.get(k, st.integers())  # unknown keys get any value
                for k in dict.fromkeys([*(r for r in ks[0] if r), *ks[1]])
            }
        )
    )


_step = st.builds(
    lambda t, variants: {**t, **({"variants": variants} if variants else {})},
    _table(_step_values, "channel", "body", "subject"),
    st.lists(_table(_variant_values, "name"), max_size=2),
)
_campaign = st.builds(
    lambda t, steps: {**t, "steps": steps},
    _table(_campaign_values, "status"),
    st.lists(_step, max_size=3),
)


@st.composite
def campaign_files(draw: st.DrawFn) -> str:
    doc: dict[str, Any] = {}
    for section, values in _top_values.items():
        if draw(st.booleans()):
            doc[section] = draw(_table(values))
    channel = _table(_channel_values, "provider", "kind")
    doc["channels"] = draw(st.dictionaries(_names, channel, max_size=3))
    doc["campaigns"] = draw(
        st.dictionaries(st.sampled_from(["welcome", "spring", "b a d"]), _campaign, max_size=2)
    )
    return tomlkit.dumps(_toml_safe(doc))


def _toml_safe(value: Any) -> Any:
    """TOML has no empty bare keys in tomlkit's output; drop them (nan and inf are TOML)."""
    if isinstance(value, dict):
        return {k: _toml_safe(v) for k, v in value.items() if k}
    if isinstance(value, list):
        return [_toml_safe(v) for v in value]
    return value


# ---------------------------------------------------------------- running the CLI

_runner = CliRunner()


def _run(*args: str | Path) -> None:
    res = _runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    output = res.stdout + res.stderr
    assert res.exit_code in (0, 1, 2), output
    assert "internal error" not in output, output
    assert "Traceback" not in output, output


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "t.j2").write_text("Hello {{ lead.first_name | default('there') }}")
    return tmp_path


def _check(folder: Path, text: str) -> None:
    (folder / "campaigns.toml").write_text(text, encoding="utf-8")
    _run("-C", folder, "check")


@settings(FUZZ, max_examples=800)
@given(text=campaign_files())
def test_check_never_fails_inside_on_structured_campaign_files(folder: Path, text: str) -> None:
    _check(folder, text)


@settings(FUZZ, max_examples=400)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.builds(
            lambda head, cut, tail: MINIMAL_TOML[:cut] + head + MINIMAL_TOML[cut:][:tail],
            st.text(max_size=20),
            st.integers(0, len(MINIMAL_TOML)),
            st.integers(0, len(MINIMAL_TOML)),
        ),
    )
)
def test_check_never_fails_inside_on_raw_text(folder: Path, text: str) -> None:
    _check(folder, text)


def _import(folder: Path, data: bytes) -> None:
    (folder / "campaigns.toml").write_text(MINIMAL_TOML)
    (folder / "l.csv").write_bytes(data)
    _run("-C", folder, "leads", "import", "l.csv", "--dry-run")


_cell = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["ana@x.com", "ANA@x.com", "josé@example.org", "+639171234567", "0917 123 4567 x12"]
    ),
    st.sampled_from(["Asia/Manila", "Mars/Olympus", "buyer;vip", "Philippines", "Zzz"]),
)
_header = st.lists(
    st.sampled_from(
        [
            *("Email", "E-mail", "Phone", "Mobile", "First Name", "Last Name", "Time Zone"),
            *("Tags", "Country", "id", "lead", "optouts", "Budget Max", "", "email"),
        ]
    ),
    min_size=1,
    max_size=6,
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(_header)
    rows = draw(st.lists(st.lists(_cell, max_size=len(header) + 1), max_size=8))
    out = io.StringIO()
    csv.writer(out, delimiter=draw(st.sampled_from([",", ";", "\t", "|"]))).writerows(
        [header, *rows]
    )
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1250"]))
    return out.getvalue().encode(encoding, errors="replace")


@settings(FUZZ, max_examples=500)
@given(data=csv_files())
def test_import_never_fails_inside_on_random_rows(folder: Path, data: bytes) -> None:
    _import(folder, data)


@settings(FUZZ, max_examples=400)
@given(data=st.binary(max_size=300))
def test_import_never_fails_inside_on_random_bytes(folder: Path, data: bytes) -> None:
    _import(folder, data)
