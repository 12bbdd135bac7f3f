"""Templates are untrusted input: the sandbox, template paths, header values, the
unsubscribe URL, the footer separator and undefined values that are only tested."""

from __future__ import annotations

import contextlib
import email
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from typer.testing import Result

from campaignctl.audience import AudienceError, compile_audience
from campaignctl.channels.base import ChannelError, ErrorKind
from campaignctl.channels.mime import build_email
from campaignctl.config import Sender, load
from campaignctl.engine import Engine
from campaignctl.store import Store
from tests.support import MINIMAL_TOML, add_leads, messages, outgoing

Cli = Callable[..., Result]

BODY = "body = \"Hi {{ lead.first_name | default('there') }}!\""
SUBJECT = "subject = \"Hello {{ lead.first_name | default('there') }}\""


def write(project: Path, old: str, new: str) -> None:
    toml = project / "campaigns.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new, 1))


def import_leads(cli: Cli, project: Path, rows: str) -> None:
    (project / "leads.csv").write_text("email,first_name\n" + rows)
    r = cli("-C", project, "leads", "import", project / "leads.csv")
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------- 1: the sandbox


PAYLOADS = [
    "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% if cycler.__init__.__globals__.os.popen('touch PWNED').read() %}x{% endif %}",
    "{{ lead.tags.append('pwned') }}",
    "{{ lead.email.__class__.__mro__ }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_check_refuses_template_code_and_runs_none(
    cli: Cli, project: Path, payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)  # where `touch PWNED` would write
    write(project, BODY, f'body = "{payload}"')
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.welcome.steps[0].body: not allowed in a template: " in r.stdout
    assert not (project / "PWNED").exists()


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (SUBJECT, 'subject = "{{ cycler.__init__.__globals__ }}"', "steps[0].subject"),
        (
            BODY,
            'template = "t.md.j2"',
            "steps[0].template",
        ),
        (
            'reply STOP to opt out."',
            'reply STOP to opt out."\ncontent_variables = { 1 = "{{ joiner.__init__ }}" }',
            "steps[1].content_variables.1",
        ),
    ],
)
def test_every_template_is_sandboxed(
    cli: Cli, project: Path, old: str, new: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    (project / "t.md.j2").write_text(
        "Hi,\n\n{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}\n"
    )
    write(project, old, new)
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert f"campaigns.welcome.{key}: not allowed in a template: " in r.stdout
    assert not (project / "PWNED").exists()


@pytest.mark.parametrize(
    "expr", ["{{ 'a' * 10**9 }}", "{{ (lead.email * 10**8) | length }}", "{{ 7 ** 10000000 }}"]
)
def test_templates_cannot_exhaust_memory_or_time(cli: Cli, project: Path, expr: str) -> None:
    write(project, BODY, f'body = "{expr}"')
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "is too large for a template" in r.stdout


def test_ordinary_arithmetic_and_repetition_still_work(cli: Cli, project: Path) -> None:
    write(project, BODY, "body = \"{{ 2 ** 10 }} {{ '=' * 3 }} {{ 3 * [1] }} {{ 2.5 * 2 }}\"")
    r = cli("-C", project, "preview", "welcome")
    assert r.exit_code == 0, r.output
    assert "1024 === [1, 1, 1] 5.0" in r.stdout


def test_send_fails_the_message_and_runs_no_code(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    write(project, BODY, f'body = "{PAYLOADS[0]}"')
    import_leads(cli, project, "maria@example.com,María\n")
    r = cli("-C", project, "send")
    assert r.exit_code == 1
    assert "not allowed in a template" in r.stderr
    assert "summary: sent 0, failed 1" in r.stdout
    assert not (project / "PWNED").exists()


def test_audience_expressions_cannot_change_the_lead() -> None:
    lead = {"status": "new", "tags": ["buyer"]}
    with contextlib.suppress(AudienceError):
        compile_audience("tags.append('vip') or true")(lead)
    assert lead["tags"] == ["buyer"]


# ---------------------------------------------------------------- 2: template paths


def _outside(project: Path) -> Path:
    secret = project.parent / f"{project.name}-secret.txt"
    secret.write_text("SECRET=1\n")
    return secret


def _link(link: Path, target: Path, name: str) -> str:
    link.symlink_to(target)
    return name


@pytest.mark.parametrize(
    "make",
    [
        lambda p, secret: str(secret),  # absolute
        lambda p, secret: f"../{secret.name}",
        lambda p, secret: f"templates/../../{secret.name}",
        lambda p, secret: "~/.bashrc",
        lambda p, secret: _link(p / "link.txt", secret, "link.txt"),
        lambda p, secret: _link(p / "up", p.parent, f"up/{secret.name}"),
    ],
    ids=["absolute", "dotdot", "inner-dotdot", "tilde", "symlink-file", "symlink-dir"],
)
def test_template_paths_outside_the_directory_are_configuration_errors(
    cli: Cli, project: Path, make: Callable[[Path, Path], str]
) -> None:
    (project / "templates").mkdir()
    name = make(project, _outside(project))
    write(project, BODY, f'template = "{name}"')
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.welcome.steps[0].template: template path " in r.stdout
    assert "SECRET" not in r.output
    r = cli("-C", project, "send")
    assert r.exit_code == 2
    assert "campaigns.welcome.steps[0].template: template path " in r.stderr
    assert not (project / "outbox").exists()


def test_a_variant_template_outside_the_directory_is_refused(cli: Cli, project: Path) -> None:
    write(
        project,
        BODY,
        BODY + '\n[[campaigns.welcome.steps.variants]]\nname = "a"\ntemplate = "/etc/hostname"\n',
    )
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    assert (
        "campaigns.welcome.steps[0].variants[0].template: template path '/etc/hostname' "
        "must be relative to the campaign file's directory"
    ) in r.stdout


@pytest.mark.parametrize(
    "tag",
    [
        "{% include '/etc/passwd' %}",
        "{% include '../SECRET' %}",
        "{% extends 'up/SECRET' %}",
        "{% import '/etc/passwd' as x %}",
    ],
)
def test_includes_cannot_leave_the_directory(cli: Cli, project: Path, tag: str) -> None:
    (project.parent / "SECRET").write_text("SECRET=1\n")
    (project / "up").symlink_to(project.parent)
    (project / "t").mkdir()
    (project / "t" / "body.md").write_text(f"Hi\n{tag}\n")
    write(project, BODY, 'template = "t/body.md"')
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.welcome.steps[0].template: not allowed in a template: template path" in (
        r.stdout
    )
    assert "SECRET=1" not in r.output


def test_includes_inside_the_directory_work(cli: Cli, project: Path) -> None:
    (project / "t").mkdir()
    (project / "t" / "sig.txt").write_text("Ana {{ lead.first_name | default('') }}")
    (project / "t" / "body.md").write_text("Hi\n\n{% include 't/sig.txt' %}\n")
    write(project, BODY, 'template = "t/body.md"')
    r = cli("-C", project, "check")
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------- 3: header values


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('name = "Ana Cruz"', 'name = "Ana\\r\\nBcc: all@example.com"', "sender.name"),
        ('email = "ana@sunrise.example"', 'email = "ana@sunrise.example\\n"', "sender.email"),
        (
            'email = "ana@sunrise.example"',
            'email = "ana@sunrise.example"\nreply_to = "a@b.example\\rX: y"',
            "sender.reply_to",
        ),
        (
            'email = "ana@sunrise.example"',
            'email = "ana@sunrise.example"\nunsubscribe_url = "https://x.example/\\nX: y"',
            "sender.unsubscribe_url",
        ),
        (
            SUBJECT,
            'subject = "Hello\\r\\nBcc: all@example.com"',
            "campaigns.welcome.steps[0].subject",
        ),
        (
            BODY,
            BODY + '\n[[campaigns.welcome.steps.variants]]\nname = "a"\nsubject = "A\\nB"\n',
            "campaigns.welcome.steps[0].variants[0].subject",
        ),
    ],
)
def test_line_breaks_in_header_values_are_reported(
    cli: Cli, project: Path, old: str, new: str, key: str
) -> None:
    write(project, old, new)
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert f"{key}: contains a line break or control character" in r.stdout
    r = cli("-C", project, "send")
    assert r.exit_code == 2
    assert f"{key}: contains a line break or control character" in r.stderr


def test_no_header_value_carries_a_line_break() -> None:
    sender = Sender(name="Ana Cruz", email="ana@sunrise.example")
    with pytest.raises(ChannelError) as info:
        build_email(outgoing(subject="Hi\r\nBcc: all@example.com"), sender)
    assert info.value.kind is ErrorKind.PERMANENT
    assert "Subject header would contain a line break" in info.value.message


def test_a_line_break_that_reaches_a_header_fails_the_message_instead_of_uncertain(
    tmp_path: Path,
) -> None:
    (tmp_path / "campaigns.toml").write_text(MINIMAL_TOML)
    cfg = load(tmp_path / "campaigns.toml")
    cfg.sender.reply_to = "ana@sunrise.example\r\nBcc: all@example.com"  # past the validation
    store = Store.for_config(cfg)
    add_leads(store, 1)
    res = Engine(cfg, store).run_pass(datetime(2026, 3, 2, 1, 0, tzinfo=UTC), random.Random(1))
    (msg,) = [m for m in messages(store) if m.channel == "email"]
    assert msg.state == "failed"
    assert "Reply-To header would contain a line break" in (msg.error or "")
    assert res.total("uncertain") == 0


# ---------------------------------------------------------------- 20: unsubscribe_url


UNSUB = 'email = "ana@sunrise.example"\nunsubscribe_url = "https://x.example/u?e={{ lead.email }}'


def test_unsubscribe_url_is_rendered_per_lead_and_url_encoded(cli: Cli, project: Path) -> None:
    write(project, 'email = "ana@sunrise.example"', UNSUB + '&n={{ lead.first_name }}"')
    import_leads(cli, project, 'a+b@example.com,"Al & Co"\n')
    r = cli("-C", project, "send")
    assert r.exit_code == 0, r.output
    (eml,) = (project / "outbox").glob("*.eml")
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    url = "https://x.example/u?e=a%2Bb%40example.com&n=Al%20%26%20Co"
    assert f"<{url}>" in str(msg["List-Unsubscribe"])
    body = msg.get_body(("plain",))
    assert body is not None
    assert f"Unsubscribe: {url}\n" in body.get_content()
    assert "{{" not in eml.read_text()


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ('&z={{ lead.zip }}"', "lead.zip is undefined for lead "),
        ('&z={{ lead.zip"', "template syntax error"),
        ('&z={{ cycler.__init__.__globals__ }}"', "not allowed in a template"),
    ],
)
def test_check_reports_unsubscribe_url_errors_once(
    cli: Cli, project: Path, tail: str, message: str
) -> None:
    write(project, 'email = "ana@sunrise.example"', UNSUB + tail)
    # a second email step: the setting is still reported once
    write(
        project,
        '[[campaigns.welcome.steps]]\nname = "nudge"',
        '[[campaigns.welcome.steps]]\nname = "again"\nchannel = "email"\nsubject = "x"\n'
        'body = "y"\n\n[[campaigns.welcome.steps]]\nname = "nudge"',
    )
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    lines = [line for line in r.stdout.splitlines() if "sender.unsubscribe_url" in line]
    assert len(lines) == 1, r.stdout
    assert f"sender.unsubscribe_url: {message}" in lines[0]


# ---------------------------------------------------------------- 28: the footer separator


def test_email_footer_starts_with_the_signature_separator(cli: Cli, project: Path) -> None:
    r = cli("-C", project, "preview", "welcome")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "-- " in lines
    assert lines[lines.index("-- ") + 1] == "Ana Cruz, 12 Ayala Ave, Makati City"


# ---------------------------------------------------------------- 29: testing undefined values


def test_undefined_values_can_be_tested(cli: Cli, project: Path) -> None:
    write(
        project,
        BODY,
        'body = "{% if lead.beds %}{{ lead.beds }} beds{% else %}homes{% endif %}, '
        "{{ lead.beds is defined }}, {{ lead.beds | default('any') }}, "
        "{{ 'x' in lead.areas }}, {{ lead.beds == 2 }}\"",
    )
    r = cli("-C", project, "check")
    assert r.exit_code == 0, r.output
    r = cli("-C", project, "preview", "welcome")
    assert "homes, False, any, False, False" in r.stdout


@pytest.mark.parametrize(
    "expr", ["{{ lead.beds }}", "{{ lead.beds | upper }}", "{% for b in lead.beds %}{% endfor %}"]
)
def test_printing_an_undefined_value_is_still_an_error(cli: Cli, project: Path, expr: str) -> None:
    write(project, BODY, f'body = "Hi {expr}"')
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    assert "campaigns.welcome.steps[0].body: lead.beds is undefined for lead " in r.stdout


# ---------------------------------------------------------------- security review: headers


INJECT = "\\u{:04x}Bcc: victim@evil.example"  # a TOML escape; the line break varies


@pytest.mark.parametrize(
    "char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e", "\x00", "\x7f"]
)
@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("reply_to", 'reply_to = "you@example.com{}"'),
        ("email", 'email = "ana@sunrise.example{}"'),
        ("unsubscribe_url", 'unsubscribe_url = "https://x.example/u{}"'),
        ("name", 'name = "Ana{}"'),
    ],
)
def test_no_line_break_or_control_character_reaches_a_header(
    cli: Cli, project: Path, char: str, key: str, line: str
) -> None:
    import_leads(cli, project, "maria@example.com,María\n")
    old = 'email = "ana@sunrise.example"'
    write(project, old, old + "\n" + line.format(INJECT.format(ord(char))))
    if key == "email":
        write(project, old + "\n", "")
    if key == "name":
        write(project, 'name = "Ana Cruz"\n', "")
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert f"sender.{key}: contains a line break or control character" in r.stdout
    r = cli("-C", project, "send")
    assert r.exit_code == 2, r.output
    assert not list(project.glob("outbox/*.eml"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('reply_to = "you at example.com"', "sender.reply_to: not an email address"),
        ('unsubscribe_url = "javascript:alert(1)"', "sender.unsubscribe_url: must be an https://"),
        ('unsubscribe_url = "https://x.example/u <b>"', "sender.unsubscribe_url: not a URL"),
    ],
)
def test_sender_addresses_and_unsubscribe_url_are_validated(
    cli: Cli, project: Path, line: str, message: str
) -> None:
    old = 'email = "ana@sunrise.example"'
    write(project, old, f"{old}\n{line}")
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert message in r.stdout


def test_a_message_that_cannot_be_serialised_is_unsendable() -> None:
    from email.message import Message

    from campaignctl.channels.base import UNSENDABLE
    from campaignctl.channels.mime import to_bytes

    em: Message = Message()
    em["Reply-To"] = "a@example.com\x0bBcc: victim@evil.example"
    with pytest.raises(ChannelError) as info:
        to_bytes(em, utf8=False)
    assert (info.value.kind, info.value.code) == (ErrorKind.PERMANENT, UNSENDABLE)


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\u2028"])
def test_a_header_the_generator_refuses_fails_the_message_and_spares_the_breaker(
    tmp_path: Path, char: str
) -> None:
    (tmp_path / "campaigns.toml").write_text(MINIMAL_TOML)
    cfg = load(tmp_path / "campaigns.toml")
    cfg.sender.reply_to = f"ana@sunrise.example{char}Bcc: victim@evil.example"  # past check
    store = Store.for_config(cfg)
    add_leads(store, 3)
    res = Engine(cfg, store).run_pass(datetime(2026, 3, 2, 1, 0, tzinfo=UTC), random.Random(1))
    emails = [m for m in messages(store) if m.channel == "email"]
    assert [m.state for m in emails] == ["failed"] * 3
    assert res.total("uncertain") == 0
    with store.read() as s:
        breaker = Engine.breaker(s.connection(), "email")
    assert breaker.recent == ()
    assert breaker.trips == 0
    assert not list((tmp_path / "outbox").glob("*.eml"))


# ---------------------------------------------------------------- security review: unsubscribe_url


def test_unsubscribe_url_takes_no_statements(cli: Cli, project: Path) -> None:
    (project / "u.txt").write_text("x\r\nBcc: victim@evil.example")
    old = 'email = "ana@sunrise.example"'
    url = "https://x.example/{% include 'u.txt' %}?e={{ lead.email }}"
    write(project, old, f'{old}\nunsubscribe_url = "{url}"')
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "sender.unsubscribe_url: only {{ ... }} expressions are allowed here" in r.stdout


# ---------------------------------------------------------------- security review: resources


@pytest.mark.parametrize(
    "expr",
    [
        "{{ '%0999999999d'|format(1)|length }}",
        "{{ ('%0999999999d' % 1)|length }}",
        "{{ 'a'|center(999999999)|length }}",
        "{{ 'a'|indent(999999999)|length }}",
        "{{ (['a'*100000]*100000)|join|length }}",
        "{{ lipsum(n=100000)|length }}",
        "{{ 2**100**100**100**100**100 > 0 }}",
    ],
)
def test_the_sandbox_caps_the_common_ways_to_exhaust_memory_or_time(
    cli: Cli, project: Path, expr: str
) -> None:
    write(project, BODY, f'body = "{expr}"')
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.welcome.steps[0].body: not allowed in a template: " in r.stdout
    assert "is too large for a template" in r.stdout


@pytest.mark.parametrize(
    ("limit", "expr", "message"),
    [
        (
            "CPU_LIMIT",
            "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}",
            "rendering exceeded the 1 s CPU limit",
        ),
        (
            "MEMORY_LIMIT",
            "{% set ns = namespace(s='a' * 100000) %}{% for i in range(30) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            "rendering exceeded the 0.25 GiB memory limit",
        ),
    ],
)
def test_check_renders_in_a_worker_with_limits_and_reports_every_problem(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch, limit: str, expr: str, message: str
) -> None:
    from campaignctl import isolation

    monkeypatch.setattr(isolation, limit, 1 if limit == "CPU_LIMIT" else 1 << 28)
    write(project, BODY, f'body = "{expr}"')
    write(project, "reply STOP to opt out.", "{{ lead.nope }} reply STOP to opt out.")
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert f"campaigns.welcome.steps[0].body: {message}" in r.stdout
    assert "campaigns.welcome.steps[1].body: lead.nope is undefined" in r.stdout  # not lost
    r = cli("-C", project, "preview", "welcome")
    assert r.exit_code != 0
    assert f"campaigns.welcome.steps[0].body: {message}" in r.stderr


def test_a_template_that_blocks_is_stopped_by_the_wall_clock(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from campaignctl import isolation

    monkeypatch.setattr(isolation, "WALL_LIMIT", 1)
    os.mkfifo(project / "pipe.txt")  # reading it blocks without using CPU
    write(project, BODY, "body = \"{% include 'pipe.txt' %}\"")
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.welcome.steps[0].body: rendering took longer than 1 s" in r.stdout


def test_a_long_check_of_many_leads_is_not_taken_for_a_blocked_one(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check --leads` renders the same templates for every lead: the worker tells the parent
    each key once, then only counts its steps in shared memory. Rendering 1,500 leads takes
    longer than the wall-clock limit in all, never in one step: nothing is cut short, and a
    step that blocks is still blamed on its key after many steps of other keys."""
    import os

    from campaignctl import isolation

    monkeypatch.setattr(isolation, "WALL_LIMIT", 1)
    busy = "{% for i in range(20000) %}{% endfor %}Hi {{ lead.first_name }}"
    write(project, BODY, f'body = "{busy}"')
    rows = "".join(f"lead{i}@example.com,Lead{i}\n" for i in range(1500))
    (project / "leads.csv").write_text("email,first_name\n" + rows)
    r = cli("-C", project, "check", "--leads", project / "leads.csv")
    assert r.exit_code == 0, r.output
    assert "rendered for 1500 sample lead(s)" in r.stdout
    # the last lead's SMS step blocks: blamed on that step, after 1,500 leads' steps
    os.mkfifo(project / "pipe.txt")  # reading it blocks without using CPU
    block = "{% if lead.first_name == 'Lead1499' %}{% include 'pipe.txt' %}{% endif %}"
    write(project, "reply STOP to opt out.", block + "reply STOP to opt out.")
    r = cli("-C", project, "check", "--leads", project / "leads.csv")
    assert r.exit_code == 1, r.output
    assert "campaigns.welcome.steps[1].body: rendering took longer than 1 s" in r.stdout


def test_an_edit_renders_in_the_worker_too(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaignctl import isolation

    monkeypatch.setattr(isolation, "CPU_LIMIT", 1)
    before = (project / "campaigns.toml").read_text()
    loop = "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
    r = cli("-C", project, "step", "set", "welcome", "hello", f"body={loop}")
    assert r.exit_code != 0
    assert "rendering exceeded the 1 s CPU limit" in r.output
    assert (project / "campaigns.toml").read_text() == before


@pytest.mark.parametrize(
    "audience", ["10**(10**10) > 0", "('a'*10**9)|length > 0", "2**100**100**100 > 0"]
)
def test_audience_expressions_are_capped(cli: Cli, project: Path, audience: str) -> None:
    write(project, "audience = \"status == 'new'\"", f'audience = "{audience}"')
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.welcome.audience: cannot evaluate" in r.stdout
    assert "is too large for a template" in r.stdout


# ---------------------------------------------------------------- security review: includes


@pytest.mark.parametrize(
    ("files", "name", "reason"),
    [
        ({".env": "TWILIO_AUTH_TOKEN=secret"}, ".env", "hidden file"),
        ({".git/config": "[remote]"}, ".git/config", "hidden file"),
        ({".secrets/gmail-token.json": "{}"}, ".secrets/gmail-token.json", "hidden file"),
        ({"token.json": "{}"}, "token.json", "template suffix"),
        ({"data.db": "SQLite"}, "data.db", "template suffix"),
        ({"secret.txt": "{}"}, "secret.txt", "credentials or the database"),
    ],
)
def test_templates_cannot_read_credentials_or_hidden_files(
    cli: Cli, project: Path, files: dict[str, str], name: str, reason: str
) -> None:
    for rel, text in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    write(
        project,
        "daily_limit = 100\n",
        'daily_limit = 100\n\n[channels.gm]\nprovider = "gmail"\ncredentials = "secret.txt"\n',
    )
    write(project, BODY, f"body = \"{{% include '{name}' %}}\"")
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "campaigns.welcome.steps[0].body: not allowed in a template: " in r.stdout
    assert reason in r.stdout
    # a symlink with a template suffix does not get round it
    (project / "innocent.txt").symlink_to(project / name)
    write(project, f"include '{name}'", "include 'innocent.txt'")
    r = cli("-C", project, "check")
    assert r.exit_code == 1, r.output
    assert "not allowed in a template: " in r.stdout
