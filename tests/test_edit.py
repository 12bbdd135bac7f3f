"""The editing core: values, keys, atomic writes, the lock, and the sent-messages rule."""

from __future__ import annotations

import codecs
import os
import shutil
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaignctl.config import Step, edit, load
from campaignctl.errors import CampaignctlError, ConfigError, LockHeldError, UsageError
from campaignctl.locking import FileLock
from tests.support import REPO

SOURCE = Path(__file__).parent / "data" / "commented.toml"
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "campaigns.toml"
    shutil.copy(SOURCE, path)
    return path


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("2", 2),
        ("250", 250),
        ("true", True),
        ('["reply"]', ["reply"]),
        ("'2d'", "2d"),
        ("2d", "2d"),
        ("city == 'Manila'", "city == 'Manila'"),
        ("09:00-20:00", "09:00-20:00"),
        ("Hello {{ lead.first_name }}", "Hello {{ lead.first_name }}"),
        ('"true"', "true"),
        ("1\nx = 2", "1\nx = 2"),  # two keys is not one value
        ("", ""),
    ],
)
def test_parse_value(raw, value):
    assert edit.parse_value(raw) == value


def test_valid_keys_come_from_the_models():
    keys = edit.valid_keys(Step)
    assert keys[:3] == ["name", "channel", "delay"]
    assert "content_variables.KEY" in keys
    assert "variants.NAME.KEY" in keys
    assert set(Step.model_fields) - {"variants"} <= set(keys)


def test_unknown_channel_key_lists_that_providers_keys(toml):
    with pytest.raises(UsageError) as info:
        edit.set_channel(toml, "email", ["host=smtp.example"])
    assert str(info.value).endswith("channels.email: unknown key 'host'")
    assert info.value.hint is not None
    assert "path" in info.value.hint  # an outbox key
    assert "host" not in info.value.hint  # smtp's, not outbox's


def test_channel_provider_change_uses_the_new_providers_keys(toml):
    before = toml.read_bytes()
    with pytest.raises(ConfigError) as info:
        edit.set_channel(toml, "email", ["provider=smtp"])
    assert "channels.email.host: required key is missing" in str(info.value)
    assert toml.read_bytes() == before
    out = edit.set_channel(toml, "email", ["provider=smtp", "host=smtp.example"])
    assert out.changed
    cfg = load(toml)
    assert cfg.channels["email"].provider == "smtp"


def test_invalid_edit_leaves_the_file_byte_identical(toml):
    before = toml.read_bytes()
    inode = toml.stat().st_ino
    with pytest.raises(ConfigError) as info:
        edit.set_step(toml, "welcome", "nudge", ["delay=2 days"])
    assert str(info.value).startswith(f"{toml}: campaigns.welcome.steps[1].delay: invalid duration")
    assert toml.read_bytes() == before
    assert toml.stat().st_ino == inode  # not even rewritten with the same bytes
    assert not [p for p in toml.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_keeps_permissions_and_replaces_atomically(toml):
    toml.chmod(0o640)
    inode = toml.stat().st_ino
    edit.set_campaign(toml, "welcome", ["priority=3"])
    assert stat.S_IMODE(toml.stat().st_mode) == 0o640
    assert toml.stat().st_ino != inode  # a new file renamed over the old one
    assert load(toml).campaigns["welcome"].priority == 3
    assert sorted(p.name for p in toml.parent.iterdir()) == [
        ".campaigns.toml.lock",
        "campaigns.toml",
    ]


def test_no_change_writes_nothing(toml):
    inode = toml.stat().st_ino
    out = edit.set_channel(toml, "email", ["daily_limit=450"])
    assert not out.changed
    assert toml.stat().st_ino == inode
    assert toml.read_text() == SOURCE.read_text()


def test_symlinked_file_is_edited_through_the_link(toml, tmp_path):
    link = tmp_path / "link.toml"
    link.symlink_to(toml)
    edit.set_status(link, "welcome", "paused")
    assert link.is_symlink()
    assert load(toml).campaigns["welcome"].status == "paused"


def test_byte_order_mark_survives(toml):
    toml.write_bytes(codecs.BOM_UTF8 + SOURCE.read_bytes())
    edit.set_status(toml, "welcome", "paused")
    assert toml.read_bytes().startswith(codecs.BOM_UTF8)


def test_read_only_file_is_refused_before_locking(toml):
    toml.chmod(0o444)
    with pytest.raises(CampaignctlError, match="read-only"):
        edit.add_campaign(toml, "promo")
    assert toml.read_bytes() == SOURCE.read_bytes()


def test_a_held_lock_times_out_with_exit_75(toml, monkeypatch):
    monkeypatch.setattr(edit, "LOCK_WAIT_SECONDS", 0.0)
    lock = FileLock(edit.lock_path(toml)).acquire()
    try:
        with pytest.raises(LockHeldError) as info:
            edit.set_status(toml, "welcome", "paused")
    finally:
        lock.release()
    assert info.value.exit_code == 75
    assert toml.read_bytes() == SOURCE.read_bytes()


def _has_open(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_concurrent_edits_all_land(toml):
    """Four processes wait on the lock together, then all rush in: no update is lost."""
    lock = FileLock(edit.lock_path(toml)).acquire()
    commands = [
        ["campaign", "add", "one"],
        ["campaign", "add", "two"],
        ["channel", "set", "sms", "daily_limit=42"],
        ["step", "set", "welcome", "nudge", "delay=3d"],
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "campaignctl", "--config", str(toml), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for args in commands
    ]
    try:
        deadline = time.monotonic() + 60
        lock_file = str(edit.lock_path(toml))
        # Wait until every process is inside acquire(): it has the lock file open.
        while not all(_has_open(p.pid, Path(lock_file)) for p in procs):
            assert all(p.poll() is None for p in procs), "an editor exited before the lock"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        lock.release()
    for p in procs:
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    cfg = load(toml)
    assert {"one", "two"} <= set(cfg.campaigns)
    assert cfg.channels["sms"].daily_limit == 42
    assert cfg.campaigns["welcome"].steps[1].delay.days == 3


# ---------------------------------------------------------------- sent messages and --force


def _record_sent(project: Path, campaign: str, step: str) -> Path:
    from campaignctl.store import SENT, Lead, Message, Store

    cfg = load(project / "campaigns.toml")
    store = Store.for_config(cfg)
    with store.write() as session:
        lead = Lead(email="ana@example.com")
        session.add(lead)
        session.flush()
        assert lead.id is not None
        session.add(
            Message(
                campaign=campaign,
                step=step,
                step_index=0,
                lead_id=lead.id,
                channel="email",
                state=SENT,
                due_at=NOW,
                sent_at=NOW,
            )
        )
        session.add(
            Message(
                campaign=campaign,
                step="nudge",
                step_index=1,
                lead_id=lead.id,
                channel="sms",
                state="pending",
                due_at=NOW,
            )
        )
    store.close()
    assert store.path is not None
    return store.path


def test_step_with_sent_messages_needs_force(project):
    toml = project / "campaigns.toml"
    _record_sent(project, "welcome", "hello")
    before = toml.read_bytes()
    with pytest.raises(UsageError) as info:
        edit.remove_step(toml, "welcome", "hello")
    assert str(info.value).endswith(
        "step 'hello' of campaign 'welcome' already has 1 sent message(s) in the store, and "
        "this edit removes or renames it; nothing was changed"
    )
    assert str(info.value.hint).startswith("add --force to go ahead")
    assert toml.read_bytes() == before
    # A pending message is not a sent one.
    edit.remove_step(toml, "welcome", "nudge")
    assert [s.name for s in load(toml).campaigns["welcome"].steps] == ["hello"]
    edit.set_status(toml, "welcome", "paused")  # an active campaign needs a step
    edit.remove_step(toml, "welcome", "hello", force=True)
    assert load(toml).campaigns["welcome"].steps == []


def test_campaign_with_sent_messages_needs_force(cli, project):
    toml = project / "campaigns.toml"
    _record_sent(project, "welcome", "hello")
    before = toml.read_bytes()
    r = cli("-C", project, "campaign", "remove", "welcome", "--yes")
    assert r.exit_code == 2
    assert "campaign 'welcome' already has 1 sent message(s)" in r.stderr
    assert toml.read_bytes() == before
    r = cli("-C", project, "campaign", "remove", "welcome", "--yes", "--force")
    assert r.exit_code == 0, r.output
    assert "welcome" not in load(toml).campaigns


def test_removal_never_creates_the_database(project):
    edit.remove_step(project / "campaigns.toml", "welcome", "hello")
    edit.remove_campaign(project / "campaigns.toml", "welcome")
    assert not (project / "campaignctl.db").exists()


def test_step_remove_in_cli_names_force(cli, project):
    _record_sent(project, "welcome", "hello")
    r = cli("-C", project, "step", "remove", "welcome", "hello")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("hint: add --force to go ahead")
    assert cli("-C", project, "step", "remove", "welcome", "hello", "--force").exit_code == 0


def test_removing_a_key_the_new_provider_does_not_take(example_project):
    toml = example_project / "campaigns.toml"
    edit.set_channel(toml, "email", ["provider=smtp", "host=smtp.example", "path="])
    text = toml.read_text()
    assert 'provider = "smtp"                # gmail | smtp | outbox' in text
    assert 'host = "smtp.example"' in text
    assert "\npath =" not in text.split("[channels.sms]")[0]


CHANNELS = '[channels.email]\nprovider = "outbox"\n'


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", '[campaigns.new]\nkind = "sequence"\nstatus = "draft"\n'),
        (CHANNELS, CHANNELS + '\n[campaigns.new]\nkind = "sequence"\nstatus = "draft"\n'),
        (
            CHANNELS + '\n[campaigns.x]\nstatus = "draft"',  # no newline at the end
            CHANNELS + '\n[campaigns.x]\nstatus = "draft"\n\n'
            '[campaigns.new]\nkind = "sequence"\nstatus = "draft"\n',
        ),
        (
            CHANNELS + '\n[campaigns]\nx = { status = "draft" }\n',
            CHANNELS + '\n[campaigns]\nx = { status = "draft" }\n\n'
            '[campaigns.new]\nkind = "sequence"\nstatus = "draft"\n',
        ),
    ],
)
def test_campaign_add_layout(tmp_path, before, after):
    path = tmp_path / "campaigns.toml"
    path.write_text(before)
    edit.add_campaign(path, "new")
    assert path.read_text() == after


def test_crlf_file_stays_crlf(tmp_path):
    path = tmp_path / "campaigns.toml"
    text = CHANNELS + '\n[campaigns.x]\nstatus = "draft"\n'
    path.write_bytes(text.replace("\n", "\r\n").encode())
    edit.add_step(path, "x", channel="email", delay="0s", subject="Hi", body="one\ntwo")
    raw = path.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert raw.endswith(b'body = """one\r\ntwo"""\r\n')
    assert raw.startswith(text.replace("\n", "\r\n").encode() + b"\r\n[[campaigns.x.steps]]\r\n")


def test_inline_campaign_gets_inline_steps(tmp_path):
    path = tmp_path / "campaigns.toml"
    path.write_text(CHANNELS + '\n[campaigns]\nx = { status = "draft" }   # short\n')
    edit.add_step(path, "x", channel="email", delay="1d", name="a", subject="Hi", body="b")
    assert path.read_text().endswith(
        '\nx = { status = "draft", steps = [{name = "a", channel = "email", delay = "1d", '
        'subject = "Hi", body = "b"}] }   # short\n'
    )


def test_renaming_a_step_with_sent_messages_needs_force(project):
    toml = project / "campaigns.toml"
    _record_sent(project, "welcome", "hello")
    before = toml.read_bytes()
    with pytest.raises(UsageError, match="removes or renames it"):
        edit.set_step(toml, "welcome", "hello", ["name=hi"])
    with pytest.raises(UsageError, match="removes or renames it"):
        edit.set_campaign(toml, "welcome", ["steps.hello.name=hi"])
    assert toml.read_bytes() == before
    edit.set_step(toml, "welcome", "nudge", ["name=poke"])  # no sends: fine
    edit.set_step(toml, "welcome", "hello", ["name=hi"], force=True)
    assert [s.name for s in load(toml).campaigns["welcome"].steps] == ["hi", "poke"]


def test_inserting_before_an_unnamed_sent_step_would_renumber_it(project):
    toml = project / "campaigns.toml"
    toml.write_text(toml.read_text().replace('name = "nudge"\n', ""))  # nudge is now step2
    _record_sent(project, "welcome", "step2")
    with pytest.raises(UsageError, match="step 'step2' of campaign 'welcome' already has 1"):
        edit.add_step(toml, "welcome", channel="sms", delay="1d", body="x", after="hello")
    edit.add_step(toml, "welcome", channel="sms", delay="1d", body="x")  # at the end: fine


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (  # the first table of the file, nothing above it
            '[campaigns.a]\nstatus = "draft"\n# a note on a\n\n# about b\n[campaigns.b]\n'
            'status = "draft"\n',
            '# about b\n[campaigns.b]\nstatus = "draft"\n',
        ),
        (  # a comment attached above the first table goes with it
            '# about a\n[campaigns.a]\nstatus = "draft"\n\n# about b\n[campaigns.b]\n'
            'status = "draft"\n',
            '# about b\n[campaigns.b]\nstatus = "draft"\n',
        ),
        (  # no blank lines anywhere: a comment between tables introduces the next one
            '[campaigns.b]\nstatus = "draft"\n# about a\n[campaigns.a]\nstatus = "draft"\n'
            "# about c\n[campaigns.c]\n",
            '[campaigns.b]\nstatus = "draft"\n# about c\n[campaigns.c]\n',
        ),
    ],
)
def test_campaign_remove_layout(tmp_path, before, after):
    path = tmp_path / "campaigns.toml"
    path.write_text(before)
    edit.remove_campaign(path, "a")
    assert path.read_text() == after
