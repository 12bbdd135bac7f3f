"""`auth gmail` (the test plays the browser) and `auth twilio`, against the loopback fakes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from urllib.parse import parse_qs, urlsplit

from tests.fakes.gmail import AUTH_CODE, CLIENT_SECRET, REFRESH_TOKEN
from tests.fakes.http import free_port
from tests.fakes.twilio import AUTH_TOKEN
from tests.support import REPO, write_project


def test_auth_twilio_shows_the_account_never_the_token(cli, twilio_project, fake_twilio):
    r = cli("-C", twilio_project, "auth", "twilio")
    assert r.exit_code == 0, r.output
    assert "twilio channel 'sms'" in r.stdout
    assert "'Sunrise Realty'" in r.stdout
    assert "status active" in r.stdout
    assert AUTH_TOKEN not in r.output
    assert fake_twilio.account_sid not in r.output  # shown masked
    (req,) = fake_twilio.http.requests
    assert req.path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}.json"


def test_auth_twilio_bad_token_is_one_line_and_exit_78(cli, twilio_project, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "not-the-token")
    r = cli("-C", twilio_project, "auth", "twilio", "--channel", "whatsapp")
    assert r.exit_code == 78
    lines = r.stderr.splitlines()
    assert lines[0].startswith("campaignctl: error: twilio channel 'whatsapp': 20003")
    assert lines[1].startswith("hint: check $TWILIO_ACCOUNT_SID")
    assert "not-the-token" not in r.output


def test_auth_twilio_suspended_account(cli, twilio_project, fake_twilio):
    fake_twilio.status = "suspended"
    r = cli("-C", twilio_project, "auth", "twilio")
    assert r.exit_code == 1
    assert "the account is suspended" in r.stderr


def test_auth_twilio_needs_a_twilio_channel(cli, gmail_project):
    r = cli("-C", gmail_project, "auth", "twilio")
    assert r.exit_code == 2
    assert "no channel with provider = 'twilio'" in r.stderr


def test_auth_gmail_rejects_a_channel_of_another_provider(cli, twilio_project, tmp_path):
    r = cli("-C", twilio_project, "auth", "gmail", "--channel", "sms", "--client-secrets", "x.json")
    assert r.exit_code == 2
    assert "channel 'sms' uses provider 'twilio', not 'gmail'" in r.stderr


def test_auth_gmail_missing_client_secrets(cli, gmail_project):
    r = cli("-C", gmail_project, "auth", "gmail", "--client-secrets", "nope.json")
    assert r.exit_code == 2
    assert "nope.json: no such file" in r.stderr
    assert "Desktop app" in r.stderr


def test_auth_gmail_installed_app_flow_writes_the_token_0600(tmp_path, fake_gmail):
    """The test is the browser: it follows the consent URL's redirect back to the local server."""
    write_project(
        tmp_path,
        '[channels.email]\nprovider = "gmail"\ncredentials = "tokens/gmail.json"\n'
        f'api_endpoint = "{fake_gmail.url}"\n',
    )
    secrets = fake_gmail.client_secrets(tmp_path / "client.json")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        # the fake token endpoint is plain http on loopback; oauthlib insists on https
        "OAUTHLIB_INSECURE_TRANSPORT": "1",
    }
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "campaignctl", "-C", str(tmp_path), "auth", "gmail"),
            *("--client-secrets", str(secrets), "--port", str(port), "--no-browser"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.strip().startswith(fake_gmail.url + "/auth?"):
                break
        consent = urlsplit(seen[-1].strip())
        query = {k: v[0] for k, v in parse_qs(consent.query).items()}
        assert query["access_type"] == "offline"
        assert query["prompt"] == "consent"
        assert set(query["scope"].split()) == {
            "https://www.googleapis.com/auth/gmail.send",
            "https://www.googleapis.com/auth/gmail.modify",
        }
        assert query["redirect_uri"] == f"http://localhost:{port}/"
        callback = f"{query['redirect_uri']}?state={query['state']}&code={AUTH_CODE}"
        with urllib.request.urlopen(callback, timeout=10) as page:
            assert b"campaignctl is connected" in page.read()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(seen) + out + err
    assert proc.returncode == 0, output
    token_file = tmp_path / "tokens" / "gmail.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    saved = json.loads(token_file.read_text())
    assert saved["refresh_token"] == REFRESH_TOKEN
    assert saved["token_uri"] == fake_gmail.token_uri
    assert [r["grant_type"] for r in fake_gmail.token_requests] == ["authorization_code"]
    assert fake_gmail.token_requests[0]["code_verifier"]  # PKCE
    assert f"ssh -N -L {port}:localhost:{port}" in output
    assert f"token saved to {token_file}" in output
    for secret in (REFRESH_TOKEN, CLIENT_SECRET, saved["token"]):
        assert secret not in output
