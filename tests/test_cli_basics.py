import json

from campaignctl import __version__


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"campaignctl {__version__}"


def test_check_example(cli, example_project):
    r = cli("-C", example_project, "check")
    assert r.exit_code == 0, r.output
    assert "0 error(s)" in r.stdout


def test_check_reports_key_path_and_exits_1(cli, project):
    toml = project / "campaigns.toml"
    toml.write_text(toml.read_text().replace("daily_limit = 50", "daily_limit = -5"))
    r = cli("-C", project, "check", "--format", "json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False
    assert [(p["path"], p["line"]) for p in data["problems"]] == [("channels.sms.daily_limit", 17)]


def test_check_github_annotations(cli, project):
    toml = project / "campaigns.toml"
    toml.write_text(toml.read_text().replace("daily_limit = 50", "daily_limitt = 50"))
    r = cli("-C", project, "check", "--format", "github")
    assert r.exit_code == 1
    assert r.stdout.startswith(
        "::error file=campaigns.toml,line=17::channels.sms.daily_limitt: unknown key"
    )


def test_missing_campaign_file_is_one_line(cli, tmp_path):
    r = cli("-C", tmp_path, "check")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "campaignctl: error: campaigns.toml: no campaign file here"
    assert lines[1].startswith("hint: run `campaignctl init`")
    assert "Traceback" not in r.output


def test_bad_directory(cli, tmp_path):
    r = cli("-C", tmp_path / "missing", "check")
    assert r.exit_code == 2
    assert "No such file or directory" in r.stderr


def test_piped_tables_are_not_cut_to_80_columns(cli, project, monkeypatch):
    """Cron mail and CI logs are not terminals; Rich would squeeze tables into 80 columns."""
    monkeypatch.delenv("COLUMNS", raising=False)
    r = cli("-C", project, "status")
    assert r.exit_code == 0, r.output
    header = next(line for line in r.stdout.splitlines() if "step" in line and "channel" in line)
    assert "uncertain" in header
    assert "opted out" in header
    assert "…" not in r.stdout


def test_closed_pipe_is_not_an_internal_error(example_project):
    """`campaignctl preview ... | head -1`: the reader leaves early; no error, no traceback."""
    import os
    import subprocess
    import sys

    from tests.support import REPO

    proc = subprocess.Popen(
        [sys.executable, "-m", "campaignctl", "-C", str(example_project), "preview", "welcome"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    proc.stdout.close()  # like `head` exiting before the first line is written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err == b""
