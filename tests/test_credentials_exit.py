"""Credentials missing, unreadable or refused exit 78 (a person must act), never 75.

75 tells cron and systemd "try again later" (`SuccessExitStatus=75`), so a server whose
credentials were revoked would never alert. The lock and an unreachable provider stay 75.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from campaignctl.config import load
from campaignctl.store import Store
from tests.support import REPO, add_leads, write_project
from tests.test_sync import SMS_CAMPAIGN

TWILIO_ENV = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET")
# nothing listens on port 9 (discard) of loopback: no request may get that far anyway
SMS_CHANNEL = '[channels.sms]\nprovider = "twilio"\nfrom = "+15005550006"\n'
SMS_CHANNEL += 'api_base = "http://127.0.0.1:9"\n'


def _sms_project(folder: Path) -> Path:
    write_project(folder, SMS_CHANNEL, SMS_CAMPAIGN)
    add_leads(Store.for_config(load(folder / "campaigns.toml")), 2)
    return folder


def test_missing_twilio_environment_exits_78_for_send_sync_and_auth(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in TWILIO_ENV:
        monkeypatch.delenv(var, raising=False)
    folder = _sms_project(tmp_path)
    for args in (["send"], ["send", "--quiet"], ["sync"], ["auth", "twilio"]):
        r = cli("-C", folder, *args)
        assert r.exit_code == 78, (args, r.stdout, r.stderr)
        assert "campaignctl: error: twilio channel 'sms': environment variable " in r.stderr
        assert "campaignctl auth twilio" in r.stderr


def test_unreadable_gmail_token_exits_78(tmp_path: Path, cli) -> None:
    (tmp_path / "token").mkdir()  # unreadable as a file, for root too
    write_project(
        tmp_path,
        '[channels.email]\nprovider = "gmail"\ncredentials = "token"\n',
        SMS_CAMPAIGN.replace('channel = "sms"', 'channel = "email"\nsubject = "Hi"'),
    )
    add_leads(Store.for_config(load(tmp_path / "campaigns.toml")), 1)
    r = cli("-C", tmp_path, "send")
    assert r.exit_code == 78, r.stderr
    assert "cannot read the token file" in r.stderr
    assert "internal error" not in r.stderr
    assert "campaignctl auth gmail --channel email" in r.stderr


def test_missing_smtp_password_exits_78(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    write_project(
        tmp_path,
        '[channels.email]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = 9\n'
        'username = "ana"\npassword_env = "SMTP_PASSWORD"\n',
        SMS_CAMPAIGN.replace('channel = "sms"', 'channel = "email"\nsubject = "Hi"'),
    )
    add_leads(Store.for_config(load(tmp_path / "campaigns.toml")), 1)
    r = cli("-C", tmp_path, "send", "--quiet")
    assert r.exit_code == 78, r.stderr
    assert "environment variable SMTP_PASSWORD is not set" in r.stderr


def test_daemon_exits_78_when_credentials_are_missing(tmp_path: Path) -> None:
    """The daemon stops instead of running forever with a channel that cannot send, and says
    why; its unit's RestartPreventExitStatus=78 keeps systemd from restarting it in a loop."""
    folder = _sms_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in TWILIO_ENV}
    env |= {"PYTHONPATH": str(REPO), "CAMPAIGNCTL_DEBUG": ""}
    r = subprocess.run(
        [sys.executable, "-m", "campaignctl", "-C", str(folder), "daemon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 78, r.stdout + r.stderr
    assert "stopping with exit 78, a person must act: twilio channel 'sms'" in r.stdout
    assert "campaignctl auth twilio" in r.stdout
    assert "daemon stopped" in r.stdout


def test_daemon_stops_only_the_channel_whose_credentials_are_missing(tmp_path: Path) -> None:
    """Review of issue 9 #10: SMS without its Twilio variables must not stop email. The daemon
    keeps sending email, logs the SMS problem once per sync interval, `status` shows it, and a
    SIGTERM ends it with 0 (78 only when every channel with work needs a person)."""
    import json
    import signal
    import time

    promo = (
        '\n[campaigns.promo]\nstatus = "active"\n\n[[campaigns.promo.steps]]\nname = "offer"\n'
        'channel = "email"\nsubject = "An offer"\nbody = "Hi {{ lead.first_name }}."\n'
    )
    write_project(
        tmp_path,
        '[channels.email]\nprovider = "outbox"\n\n' + SMS_CHANNEL,
        '[daemon]\ntick = "1s"\nsync_interval = "1h"\n' + SMS_CAMPAIGN + promo,
    )
    add_leads(Store.for_config(load(tmp_path / "campaigns.toml")), 2)
    env = {k: v for k, v in os.environ.items() if k not in TWILIO_ENV}
    env |= {"PYTHONPATH": str(REPO), "CAMPAIGNCTL_DEBUG": ""}
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "campaignctl", "-C", str(tmp_path), "daemon"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:

            def status() -> dict[str, Any]:
                args = ["-C", str(tmp_path), "status", "--format", "json"]
                r = subprocess.run(
                    [sys.executable, "-m", "campaignctl", *args],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                doc: dict[str, Any] = json.loads(r.stdout)
                return doc

            deadline = time.monotonic() + 60
            passes: set[str] = set()
            while time.monotonic() < deadline and proc.poll() is None:
                outbox = list((tmp_path / "outbox").glob("*.eml"))
                passes.add(status()["daemon"]["last_pass_at"] or "")
                if len(outbox) == 2 and len(passes) >= 4:  # email sent, and ticks after that
                    break
                time.sleep(0.1)
            assert proc.poll() is None, log.read_text()
            assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2, log.read_text()
            text = subprocess.run(
                [sys.executable, "-m", "campaignctl", "-C", str(tmp_path), "status"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            assert "sms: needs a person: twilio channel 'sms': environment variable " in text
            assert "campaignctl auth twilio" in text.split("sms: needs a person: ", 1)[1]
            sms = next(c for c in status()["channels"] if c["name"] == "sms")
            assert sms["needs_person"]["message"].startswith("twilio channel 'sms'")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    output = log.read_text()
    assert code == 0, output
    assert output.count("sms: needs a person: twilio channel 'sms'") == 1, output
    assert "stopping with exit 78" not in output


def _refused_send(
    folder: Path, url: str, leads: int, monkeypatch: pytest.MonkeyPatch, cli
) -> dict[str, str]:
    """A Twilio channel at the fake, `leads` leads, and a `send` without the Twilio variables
    (exit 78); the variables taken away, to give back."""
    write_project(folder, SMS_CHANNEL.replace("http://127.0.0.1:9", url), SMS_CAMPAIGN)
    add_leads(Store.for_config(load(folder / "campaigns.toml")), leads)
    creds = {var: os.environ[var] for var in TWILIO_ENV if var in os.environ}
    for var in TWILIO_ENV:
        monkeypatch.delenv(var, raising=False)
    assert cli("-C", folder, "send", "--quiet").exit_code == 78
    return creds


def test_status_shows_what_a_send_from_cron_found_until_the_channel_works(
    tmp_path: Path, cli, fake_twilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a daemon, `status` still says which channel needs a person after a `send` met
    its missing credentials; a later run that sends on it clears that."""
    creds = _refused_send(tmp_path, fake_twilio.url, 2, monkeypatch, cli)
    status = cli("-C", tmp_path, "status").stdout
    assert "sms: needs a person: twilio channel 'sms': environment variable " in status
    doc = json.loads(cli("-C", tmp_path, "status", "--format", "json").stdout)
    [sms] = [ch for ch in doc["channels"] if ch["name"] == "sms"]
    assert "campaignctl auth twilio" in sms["needs_person"]["hint"]
    assert cli("-C", tmp_path, "send", "--quiet").exit_code == 78  # recorded once, not twice
    for var, value in creds.items():
        monkeypatch.setenv(var, value)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    assert len(fake_twilio.created) == 2
    assert "needs a person" not in cli("-C", tmp_path, "status").stdout


def test_a_successful_auth_clears_what_status_said(
    tmp_path: Path, cli, fake_twilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = _refused_send(tmp_path, fake_twilio.url, 1, monkeypatch, cli)
    assert "sms: needs a person" in cli("-C", tmp_path, "status").stdout
    for var, value in creds.items():
        monkeypatch.setenv(var, value)
    res = cli("-C", tmp_path, "auth", "twilio")
    assert res.exit_code == 0, res.stderr
    assert "needs a person" not in cli("-C", tmp_path, "status").stdout
    assert fake_twilio.created == []  # auth sent nothing
