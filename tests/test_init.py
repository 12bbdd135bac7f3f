"""`init`: scaffold a project that passes `check`, and never overwrite anything."""

import csv
import tomllib

from campaignctl.project import SCAFFOLD_FILES


def test_init_creates_a_project_that_passes_check(cli, tmp_path):
    target = tmp_path / "new"
    r = cli("-C", tmp_path, "init", "new")
    assert r.exit_code == 0, r.output
    for name in SCAFFOLD_FILES:
        assert (target / name).is_file(), name
        assert f"created new/{name}" in r.stdout
    assert "campaignctl leads import leads.csv" in r.stdout
    assert "campaignctl preview welcome" in r.stdout
    cfg = tomllib.loads((target / "campaigns.toml").read_text())
    assert {ch["provider"] for ch in cfg["channels"].values()} == {"outbox"}
    assert "#" in (target / "campaigns.toml").read_text()  # commented
    with (target / "leads.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 3
    assert {"Email", "Phone", "First Name"} <= set(rows[0])

    r = cli("-C", target, "check")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("campaigns.toml: 0 error(s), 0 warning(s)")
    r = cli("-C", target, "preview", "welcome")
    assert r.exit_code == 0, r.output


def test_init_in_the_current_folder(cli, tmp_path):
    r = cli("-C", tmp_path, "init")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "campaigns.toml").is_file()
    assert "cd " not in r.stdout


def test_init_refuses_to_overwrite_and_changes_nothing(cli, tmp_path):
    (tmp_path / "campaigns.toml").write_text("# mine\n")
    r = cli("-C", tmp_path, "init")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0] == (
        "campaignctl: error: campaigns.toml: already exists; init never overwrites"
    )
    assert (tmp_path / "campaigns.toml").read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaigns.toml"]


def test_init_refuses_when_a_scaffold_file_exists(cli, tmp_path):
    (tmp_path / "leads.csv").write_text("Email\nme@example.com\n")
    r = cli("-C", tmp_path, "init")
    assert r.exit_code == 2
    assert "leads.csv: already exists" in r.stderr
    assert not (tmp_path / "campaigns.toml").exists()
    assert (tmp_path / "leads.csv").read_text() == "Email\nme@example.com\n"
