from pathlib import Path

import pytest

from campaignctl.config import load, locate_keys, validate_text
from campaignctl.errors import CampaignctlError, ConfigError
from tests.support import MINIMAL_TOML, REPO


def problems_of(text: str, tmp_path: Path) -> list[tuple[str, int | None, str]]:
    path = tmp_path / "campaigns.toml"
    path.write_text(text)
    _cfg, problems = validate_text(text, path)
    return [(p.path, p.line, p.message) for p in problems if p.severity == "error"]


def test_repository_example_is_valid():
    cfg = load(REPO / "campaigns.toml")
    assert cfg.campaigns["welcome"].steps[1].delay.days == 2
    assert cfg.channel_kind("sms") == "sms"
    assert cfg.channels["email"].daily_limit == 450


def test_minimal_is_valid(project):
    cfg = load(project / "campaigns.toml")
    assert cfg.database_url() == f"sqlite:///{project / 'campaignctl.db'}"
    assert [s.name for s in cfg.campaigns["welcome"].steps] == ["hello", "nudge"]


def test_unknown_key_has_path_and_line(tmp_path):
    text = MINIMAL_TOML.replace("daily_limit = 100", "daily_limt = 100")
    found = problems_of(text, tmp_path)
    assert found == [("channels.email.daily_limt", 12, found[0][2])]
    assert "unknown key" in found[0][2]


def test_every_problem_reported_at_once(tmp_path):
    text = (
        MINIMAL_TOML.replace('delay = "2d"', 'delay = "2 days"')
        .replace('channel = "email"', 'channel = "emial"')
        .replace('timezone = "Asia/Manila"', 'timezone = "Asia/Manilla"')
    )
    found = problems_of(text, tmp_path)
    paths = {p for p, _, _ in found}
    # pydantic refuses two values; the rest of the file is still checked (channel names)
    assert paths == {
        "settings.timezone",
        "campaigns.welcome.steps[1].delay",
        "campaigns.welcome.steps[0].channel",
    }
    assert ("settings.timezone", 2) in {(p, line) for p, line, _ in found}


def test_step_channel_typo_suggests(tmp_path):
    found = problems_of(MINIMAL_TOML.replace('channel = "email"', 'channel = "emial"'), tmp_path)
    assert found[0][0] == "campaigns.welcome.steps[0].channel"
    assert found[0][1] == 25
    assert "did you mean 'email'" in found[0][2]


def test_hourly_above_daily_is_an_error(tmp_path):
    text = MINIMAL_TOML.replace("daily_limit = 100", "daily_limit = 100\nhourly_limit = 500")
    assert problems_of(text, tmp_path)[0][:2] == ("channels.email.hourly_limit", 13)


def test_missing_template_and_subject(tmp_path):
    text = MINIMAL_TOML.replace(
        "subject = \"Hello {{ lead.first_name | default('there') }}\"\n"
        "body = \"Hi {{ lead.first_name | default('there') }}!\"",
        'template = "nope.md.j2"',
    )
    found = problems_of(text, tmp_path)
    assert {p for p, _, _ in found} == {
        "campaigns.welcome.steps[0].template",
        "campaigns.welcome.steps[0].subject",
    }


def test_unknown_provider(tmp_path):
    found = problems_of(
        MINIMAL_TOML.replace('provider = "outbox"\ndaily_limit = 100', 'provider = "mailchimp"'),
        tmp_path,
    )
    assert found[0][0] == "channels.email"
    assert "unknown provider 'mailchimp'" in found[0][2]


def test_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "campaigns.toml"
    path.write_text('[settings]\ntimezone = "UTC"\nbroken = \n')
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.problems[0].line == 3
    assert str(err.value) == f"{path}:3: TOML syntax error: Invalid value (column 10)"


def test_missing_file_points_to_init(tmp_path):
    with pytest.raises(CampaignctlError) as err:
        load(tmp_path / "campaigns.toml")
    assert "no campaign file" in err.value.message
    assert "campaignctl init" in (err.value.hint or "")


def test_locate_keys_follows_arrays_of_tables():
    text = (REPO / "campaigns.toml").read_text()
    lines = locate_keys(text)
    src = text.splitlines()
    assert src[lines["campaigns.welcome.steps[2].body"] - 1].startswith('body = "Hi')
    assert src[lines["campaigns.welcome.steps[1]"] - 1] == "[[campaigns.welcome.steps]]"
    assert src[lines["channels.sms.per_second"] - 1].startswith("per_second")
