"""`campaign`, `step` and `channel set` from the command line, compared with golden files.

Each case runs one command on tests/data/commented.toml (comments, odd spacing, inline tables,
indented variants) and compares the WHOLE resulting file with tests/data/golden/<case>.toml, so
anything changed that should not be fails. Regenerate after a deliberate change with
`UPDATE_GOLDEN=1 pytest tests/test_campaign_cli.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SOURCE = DATA / "commented.toml"
GOLDEN = DATA / "golden"

CASES: dict[str, list[str]] = {
    "campaign_add": [
        "campaign",
        "add",
        "promo",
        "--audience",
        "city == 'Manila'",
        "--priority",
        "3",
    ],
    "campaign_set": [
        "campaign",
        "set",
        "welcome",
        "priority=2",
        "audience=city == 'Manila'",
        "description=Spring push",
        'stop_on=["reply"]',
    ],
    "campaign_pause": ["campaign", "pause", "welcome"],
    "campaign_resume": ["campaign", "resume", "reactivate"],
    "campaign_remove_first": ["campaign", "remove", "welcome", "--yes"],
    "campaign_remove_middle": ["campaign", "remove", "later", "--yes"],
    "campaign_remove_last": ["campaign", "remove", "reactivate", "--yes"],
    "step_add_end": [
        "step",
        "add",
        "welcome",
        "--channel",
        "sms",
        "--delay",
        "1d",
        "--name",
        "last",
        "--body",
        "Last one",
    ],
    "step_add_after": [
        "step",
        "add",
        "welcome",
        "--channel",
        "sms",
        "--delay",
        "1d",
        "--name",
        "mid",
        "--body",
        "In between",
        "--after",
        "hello",
    ],
    "step_add_first_step": [
        "step",
        "add",
        "later",
        "--channel",
        "email",
        "--delay",
        "0s",
        "--subject",
        "Photos!",
        "--body",
        "Line one\nLine two",
    ],
    "step_add_inline_array": [
        "step",
        "add",
        "reactivate",
        "--channel",
        "sms",
        "--delay",
        "3d",
        "--name",
        "again",
        "--body",
        "Still there?",
    ],
    "step_remove_first": ["step", "remove", "welcome", "hello"],
    "step_remove_middle": ["step", "remove", "welcome", "nudge"],
    "step_remove_last": ["step", "remove", "welcome", "bye"],
    "step_remove_inline_array": ["step", "remove", "reactivate", "ping"],
    "step_set": [
        "step",
        "set",
        "welcome",
        "bye",
        "delay=6d",
        "content_variables.2=y",
        "subject=Re",
    ],
    "step_set_variant": ["step", "set", "welcome", "hello", "variants.short.subject=Hi!"],
    "channel_set_inline": ["channel", "set", "sms", "daily_limit=250", "window=09:00-20:00"],
    "channel_set_table": ["channel", "set", "email", "daily_limit=300", "hourly_limit="],
}

EDITING_COMMANDS = list(CASES.values())


@pytest.fixture
def commented(tmp_path: Path) -> Path:
    shutil.copy(SOURCE, tmp_path / "campaigns.toml")
    return tmp_path


def assert_golden(name: str, text: str) -> None:
    golden = GOLDEN / f"{name}.toml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_command_changes_only_what_it_must(cli, commented, case):
    r = cli("-C", commented, *CASES[case])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("campaigns.toml: ")
    after = (commented / "campaigns.toml").read_text()
    assert_golden(case, after)
    check = cli("-C", commented, "check")
    assert check.exit_code == 0, check.output


@pytest.mark.parametrize("args", EDITING_COMMANDS, ids=list(CASES))
def test_every_editing_command_refuses_a_read_only_file(cli, commented, args):
    toml = commented / "campaigns.toml"
    toml.chmod(0o444)
    before = toml.read_bytes()
    r = cli("-C", commented, *args)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == (
        "campaignctl: error: campaigns.toml: the campaign file is read-only; nothing was changed"
    )
    assert lines[1].startswith("hint: make it writable first (chmod u+w campaigns.toml)")
    assert toml.read_bytes() == before
    assert stat.S_IMODE(toml.stat().st_mode) == 0o444


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (
            ["campaign", "set", "welcme", "priority=2"],
            "campaignctl: error: campaigns.toml: no campaign named 'welcme'; "
            "did you mean 'welcome'?",
            "hint: run `campaignctl campaign list` to see the campaigns",
        ),
        (
            ["step", "set", "welcome", "nudg", "delay=1d"],
            "campaignctl: error: campaigns.toml: campaigns.welcome: no step named 'nudg'; "
            "did you mean 'nudge'?",
            "hint: run `campaignctl campaign show welcome` to see its steps",
        ),
        (
            ["step", "remove", "welcome", "nudg"],
            "campaignctl: error: campaigns.toml: campaigns.welcome: no step named 'nudg'; "
            "did you mean 'nudge'?",
            None,
        ),
        (
            [
                "step",
                "add",
                "welcome",
                "--channel",
                "sms",
                "--delay",
                "1d",
                "--body",
                "x",
                "--after",
                "hell",
            ],
            "campaignctl: error: campaigns.toml: campaigns.welcome: no step named 'hell'; "
            "did you mean 'hello'?",
            None,
        ),
        (
            ["campaign", "set", "welcome", "prioity=2"],
            "campaignctl: error: campaigns.toml: campaigns.welcome: unknown key 'prioity'; "
            "did you mean 'priority'?",
            "hint: valid keys: kind, status, description, audience, stop_on, priority, "
            "start_at, enrol_on, reenrol, steps.NAME.KEY",
        ),
        (
            ["channel", "set", "smss", "daily_limit=5"],
            "campaignctl: error: campaigns.toml: no channel named 'smss'; did you mean 'sms'?",
            None,
        ),
        (
            ["campaign", "set", "welcome", "priority=high"],
            "campaignctl: error: campaigns.toml: campaigns.welcome.priority: Input should be a "
            "valid integer, unable to parse string as an integer",
            "hint: the edit was refused; campaigns.toml is unchanged",
        ),
        (
            ["channel", "set", "email", "hourly_limit=1000"],
            "campaignctl: error: campaigns.toml: channels.email.hourly_limit: hourly_limit "
            "(1000) exceeds daily_limit (450)",
            "hint: the edit was refused; campaigns.toml is unchanged",
        ),
        (
            ["step", "set", "welcome", "nudge", "channel=fax"],
            "campaignctl: error: campaigns.toml: campaigns.welcome.steps[1].channel: "
            "no channel named 'fax' in [channels]",
            None,
        ),
        (
            ["campaign", "add", "promo", "--kind", "drip"],
            "campaignctl: error: campaigns.toml: campaigns.promo.kind: Input should be 'blast', "
            "'sequence' or 'trigger'",
            "hint: the edit was refused; campaigns.toml is unchanged",
        ),
        (
            ["campaign", "add", "welcome"],
            "campaignctl: error: campaigns.toml: campaign 'welcome' already exists",
            "hint: change it with `campaignctl campaign set welcome KEY=VALUE`",
        ),
        (
            [
                "step",
                "add",
                "welcome",
                "--channel",
                "sms",
                "--delay",
                "1d",
                "--name",
                "nudge",
                "--body",
                "again",
            ],
            "campaignctl: error: campaigns.toml: campaigns.welcome: a step named 'nudge' "
            "already exists",
            None,
        ),
        (
            ["step", "set", "welcome", "bye", "name=nudge"],
            "campaignctl: error: campaigns.toml: campaigns.welcome.steps[2].name: step name "
            "'nudge' is already used by steps[1]",
            None,
        ),
        (
            ["campaign", "set", "welcome", "steps=[]"],
            "campaignctl: error: campaigns.toml: campaigns.welcome.steps: holds tables; "
            "set one of their keys (steps.NAME.KEY)",
            None,
        ),
        (
            ["campaign", "resume", "later"],
            "campaignctl: error: campaigns.toml: campaigns.later: is draft; only a paused "
            "campaign can be resumed",
            "hint: a draft starts with `campaignctl campaign start later`",
        ),
        (
            ["step", "add", "welcome", "--channel", "sms", "--delay", "1d"],
            "campaignctl: error: step add: give exactly one of --body or --template",
            None,
        ),
        (
            ["campaign", "set", "welcome", "priority"],
            "campaignctl: error: 'priority': expected KEY=VALUE",
            None,
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_file_untouched(cli, commented, args, message, hint):
    toml = commented / "campaigns.toml"
    before = toml.read_bytes()
    r = cli("-C", commented, *args)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == message
    assert len(lines) <= 2
    if hint:
        assert lines[1] == hint
    assert "Traceback" not in r.output
    assert toml.read_bytes() == before


def test_remove_needs_yes_without_a_terminal(cli, commented):
    toml = commented / "campaigns.toml"
    before = toml.read_bytes()
    r = cli("-C", commented, "campaign", "remove", "welcome")
    assert r.exit_code == 2
    assert "needs confirmation" in r.stderr
    assert "--yes" in r.stderr
    assert toml.read_bytes() == before


def test_list_json(cli, commented):
    r = cli("-C", commented, "campaign", "list", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(c["name"], c["status"], c["steps"], c["channels"]) for c in rows] == [
        ("welcome", "active", 3, ["email", "sms"]),
        ("later", "draft", 0, []),
        ("reactivate", "paused", 1, ["sms"]),
    ]
    assert rows[0] == {
        "name": "welcome",
        "kind": "sequence",
        "status": "active",
        "priority": 1,
        "audience": "status == 'new'",
        "steps": 3,
        "channels": ["email", "sms"],
    }


def test_list_table(cli, commented):
    r = cli("-C", commented, "campaign", "list")
    assert r.exit_code == 0, r.output
    for word in ("welcome", "later", "reactivate", "sequence", "blast", "paused"):
        assert word in r.stdout


def test_show(cli, commented):
    r = cli("-C", commented, "campaign", "show", "welcome")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "sequence, active, priority 1" in out
    assert "short, long" in out  # variants of hello
    assert "Still interested?" in out  # first body line when there is no subject
    assert "2d" in out
    assert "5d" in out
    later = cli("-C", commented, "campaign", "show", "later")
    assert "no steps yet" in later.stdout


def test_add_then_pause_resume_round_trip(cli, commented):
    toml = commented / "campaigns.toml"
    assert cli("-C", commented, "campaign", "pause", "welcome").exit_code == 0
    assert 'status = "paused"     # flip to paused during holidays' in toml.read_text()
    assert cli("-C", commented, "campaign", "resume", "welcome").exit_code == 0
    assert toml.read_text() == SOURCE.read_text()


def test_a_new_campaign_is_a_draft_sequence_for_every_lead(cli, project):
    r = cli("-C", project, "campaign", "add", "spring")
    assert r.exit_code == 0, r.output
    rows = json.loads(cli("-C", project, "campaign", "list", "--format", "json").stdout)
    spring = next(c for c in rows if c["name"] == "spring")
    assert (spring["kind"], spring["status"], spring["audience"]) == ("sequence", "draft", None)
    assert (
        (project / "campaigns.toml")
        .read_text()
        .endswith('\n\n[campaigns.spring]\nkind = "sequence"\nstatus = "draft"\n')
    )


def test_step_add_template_is_written_relative_to_the_campaign_file(cli, tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "templates").mkdir(parents=True)
    shutil.copy(SOURCE, folder / "campaigns.toml")
    (folder / "templates" / "later.md").write_text("Hi {{ lead.first_name | default('x') }}")
    monkeypatch.chdir(tmp_path)
    r = cli(
        "--config",
        "project/campaigns.toml",
        "step",
        "add",
        "later",
        "--channel",
        "email",
        "--delay",
        "1d",
        "--subject",
        "Hi",
        "--template",
        "project/templates/later.md",
    )
    assert r.exit_code == 0, r.output
    assert 'template = "templates/later.md"' in (folder / "campaigns.toml").read_text()


def test_every_command_has_help(cli):
    for group, commands in {
        "campaign": ["list", "show", "add", "set", "pause", "resume", "remove"],
        "step": ["add", "remove", "set"],
        "channel": ["set"],
    }.items():
        for command in commands:
            r = cli(group, command, "--help")
            assert r.exit_code == 0
            assert "Usage:" in r.stdout
            assert "[OPTIONS]" in r.stdout


def test_warnings_are_printed_but_do_not_block(cli, commented):
    r = cli("-C", commented, "step", "set", "welcome", "nudge", "subject=Hi")
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith(
        "warning: campaigns.toml:60: campaigns.welcome.steps[1].subject: sms messages have no "
        "subject; it would be ignored"
    )
    assert 'delay = "2d"   # after hello\nbody = ' in (commented / "campaigns.toml").read_text()
    assert 'subject = "Hi"\n\n# The last word.' in (commented / "campaigns.toml").read_text()
    assert (commented / "campaigns.toml").read_text().splitlines()[59] == 'subject = "Hi"'


# ---------------------------------------------------------------- issue 9


@pytest.mark.parametrize(
    ("args", "path", "message"),
    [
        (
            ["step", "set", "welcome", "nudge", "body={{ lead.first_nme }}"],
            "campaigns.welcome.steps[1].body",
            "lead.first_nme is undefined for lead ",
        ),
        (
            ["campaign", "set", "welcome", "audience=status == "],
            "campaigns.welcome.audience",
            "invalid expression 'status == '",
        ),
        (
            ["step", "set", "welcome", "nudge", "body=Hi {% if %}"],
            "campaigns.welcome.steps[1].body",
            "template syntax error: ",
        ),
        (
            ["step", "add", "welcome", "--channel", "sms", "--delay", "1d", "--body", "{{ x.y }}"],
            "campaigns.welcome.steps[3].body",
            "'x' is undefined for lead ",
        ),
    ],
)
def test_edits_run_every_check_of_check_and_write_nothing(cli, commented, args, path, message):
    """Issue 9 #18: what `check` refuses, an edit refuses too (render included)."""
    toml = commented / "campaigns.toml"
    before = toml.read_bytes()
    r = cli("-C", commented, *args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"campaignctl: error: campaigns.toml: {path}: {message}")
    assert lines[1] == "hint: the edit was refused; campaigns.toml is unchanged"
    assert toml.read_bytes() == before


def test_edit_prints_checks_warnings_and_still_writes(cli, commented):
    toml = commented / "campaigns.toml"
    r = cli("-C", commented, "step", "set", "welcome", "nudge", "body=Hi, see you soon")
    assert r.exit_code == 0, r.output
    assert "campaigns.welcome.steps[1].body: the campaign's first sms message has no opt-out" in (
        r.stderr
    )
    assert 'body = "Hi, see you soon"' in toml.read_text()


TWILIO = """\
[sender]
name = "Ana"
email = "ana@example.com"
postal_address = "12 Ayala Ave"

[channels.sms]
provider = "twilio"
from = "+15005550001"
api_base = "http://127.0.0.1:9"

[channels.email]
provider = "outbox"

[campaigns.welcome]
[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi, reply STOP to opt out"
content_variables = { 1 = "a" }
"""


def test_values_take_the_type_of_their_key(cli, tmp_path):
    """Issue 9 #19: `from` is a string in the model, so a phone number stays one."""
    toml = tmp_path / "campaigns.toml"
    toml.write_text(TWILIO)
    r = cli("-C", tmp_path, "channel", "set", "sms", "from=+15005550006", "daily_limit=250")
    assert r.exit_code == 0, r.output
    text = toml.read_text()
    assert 'from = "+15005550006"' in text
    assert "daily_limit = 250\n" in text
    r = cli("-C", tmp_path, "step", "set", "welcome", "hello", "content_variables.1=2026")
    assert r.exit_code == 0, r.output
    assert 'content_variables = { 1 = "2026" }' in toml.read_text()
    r = cli("-C", tmp_path, "campaign", "set", "welcome", "priority=3", 'description="true"')
    assert r.exit_code == 0, r.output
    assert 'priority = 3\ndescription = "true"\n' in toml.read_text()


def test_campaign_start_checks_then_activates_a_draft(cli, commented):
    """Issue 9 #26: draft -> active in one command, after the checks of `check`."""
    toml = commented / "campaigns.toml"
    r = cli("-C", commented, "step", "add", "later", "--channel", "sms", "--delay", "0d",
            "--body", "Hi {{ lead.nickname }}, reply STOP to opt out")  # fmt: skip
    assert r.exit_code == 2  # a render error is refused for a draft too
    cli("-C", commented, "campaign", "set", "later", "audience=status == 'gone'")
    r = cli("-C", commented, "step", "add", "later", "--channel", "sms", "--delay", "0d",
            "--body", "Hi {{ lead.nickname }}, reply STOP to opt out")  # fmt: skip
    assert r.exit_code == 0, r.output  # no sample lead is in the audience: nothing rendered
    before = toml.read_bytes()
    r = cli("-C", commented, "campaign", "set", "later", "audience=")
    assert r.exit_code == 2
    assert "lead.nickname is undefined" in r.stderr
    r = cli("-C", commented, "campaign", "start", "later")
    assert r.exit_code == 0, r.output
    assert r.stdout == "campaigns.toml: campaign 'later': draft -> active\n"
    assert toml.read_bytes() != before
    assert 'status = "active"' in toml.read_text().split("[campaigns.later]")[1]
    r = cli("-C", commented, "campaign", "start", "reactivate")
    assert r.exit_code == 0, r.output
    assert r.stdout == "campaigns.toml: campaign 'reactivate': paused -> active\n"


def test_campaign_start_refuses_errors_and_empty_campaigns(cli, commented):
    toml = commented / "campaigns.toml"
    before = toml.read_bytes()
    r = cli("-C", commented, "campaign", "start", "later")
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        "campaignctl: error: campaigns.toml: campaigns.later: has no steps, so starting it "
        "would send nothing",
        'hint: add one first: `campaignctl step add later --channel CH --delay 0d --body "..."`',
    ]
    assert toml.read_bytes() == before
    # an error of the campaign started or of a channel it uses (here: its outbox folder),
    # even one the file already had, leaves the campaign as it was
    (commented / "outbox").write_text("a file")
    r = cli("-C", commented, "campaign", "start", "reactivate")
    assert r.exit_code == 2
    assert "channels.sms.path: the outbox folder outbox cannot take messages" in r.stderr
    assert toml.read_bytes() == before


def _with_existing_error(project):
    """An error the file already has, unrelated to the edits below: the SMS outbox folder is
    a file (issue 9 review #7), and a second, draft campaign (email only) is clean."""
    (project / "smsbox").write_text("not a folder")
    toml = project / "campaigns.toml"
    text = toml.read_text().replace("daily_limit = 50\n", 'daily_limit = 50\npath = "smsbox"\n')
    toml.write_text(
        text + '\n[campaigns.budget]\nstatus = "draft"\n\n[[campaigns.budget.steps]]\n'
        'name = "hi"\nchannel = "email"\nsubject = "Hi"\nbody = "Hello, reply STOP to opt out."\n'
    )
    return toml


def test_an_existing_error_blocks_no_pause_and_no_unrelated_edit(cli, project):
    _with_existing_error(project)
    assert "campaigns.toml: 1 error(s)" in cli("-C", project, "check").stdout
    r = cli("-C", project, "campaign", "pause", "welcome")
    assert r.exit_code == 0, r.stderr
    assert 'status = "paused"' in (project / "campaigns.toml").read_text()
    r = cli("-C", project, "campaign", "start", "budget")
    assert r.exit_code == 0, r.stderr
    r = cli("-C", project, "campaign", "set", "budget", "priority=3")
    assert r.exit_code == 0, r.stderr


def test_an_edit_is_still_refused_for_an_error_it_introduces(cli, project):
    _with_existing_error(project)
    before = (project / "campaigns.toml").read_bytes()
    r = cli("-C", project, "step", "set", "budget", "hi", "body={{ lead.first_nme }}")
    assert r.exit_code == 2
    assert "campaigns.budget.steps[0].body: lead.first_nme is undefined" in r.stderr
    assert "channels.sms.path" not in r.stderr  # the old error is not what refused it
    assert (project / "campaigns.toml").read_bytes() == before


def test_starting_a_campaign_with_an_error_of_its_own_is_refused(cli, project):
    toml = project / "campaigns.toml"
    toml.write_text(
        toml.read_text()
        .replace('status = "active"', 'status = "draft"')
        .replace("Hi {{ lead.first_name | default('there') }}!", "Hi {{ lead.first_name }}!")
    )
    r = cli("-C", project, "campaign", "start", "welcome")
    assert r.exit_code == 2
    assert "campaigns.welcome.steps[0].body: lead.first_name is undefined" in r.stderr
    assert 'status = "draft"' in toml.read_text()
