"""`status`'s finish date (issue 15 #4): forecast by `plan` up to `FORECAST_LIMIT` messages to
simulate, so that `status` stays a quick look at 1,000,000 leads; `--forecast` forces it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from campaignctl import status as status_module


def _json(cli: Callable[..., Result], folder: Path, *args: str) -> dict[str, Any]:
    res = cli("-C", folder, "status", "--format", "json", *args)
    assert res.exit_code == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@pytest.fixture
def sent(example_project: Path, cli: Callable[..., Result]) -> Path:
    """The bundled example, its leads imported and a first `send` done."""
    folder = example_project
    for args in (("leads", "import", "examples/sunrise/leads.csv"), ("send",)):
        res = cli("-C", folder, *args)
        assert res.exit_code == 0, res.stderr
    return folder


def test_a_small_database_is_forecast(sent: Path, cli: Callable[..., Result]) -> None:
    doc = _json(cli, sent)
    welcome = next(c for c in doc["campaigns"] if c["name"] == "welcome")
    assert welcome["forecast"] is True
    assert welcome["finish"] is not None
    assert doc["forecast"]["done"] is True
    # what would be simulated: the welcome sequence's pending messages, and the leads it may
    # still enrol (28 imported, 21 enrolled: the audience is not evaluated for the count)
    pending = sum(s["pending"] for s in welcome["steps"])
    assert pending > 0
    assert doc["forecast"]["messages"] == pending + 28 - welcome["enrolled"]


def test_past_the_limit_the_finish_is_left_to_plan_unless_asked(
    sent: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    forecast = _json(cli, sent)
    monkeypatch.setattr(status_module, "FORECAST_LIMIT", 5)

    doc = _json(cli, sent)
    welcome = next(c for c in doc["campaigns"] if c["name"] == "welcome")
    assert (welcome["forecast"], welcome["finish"]) == (False, None)
    assert doc["forecast"] == {
        "done": False,
        "messages": forecast["forecast"]["messages"],
        "limit": 5,
    }
    # the counts do not depend on the forecast
    assert (
        welcome["steps"]
        == next(c for c in forecast["campaigns"] if c["name"] == "welcome")["steps"]
    )
    # a draft campaign sends nothing: there is no finish to forecast for it
    house = next(c for c in doc["campaigns"] if c["name"] == "open-house")
    assert house["forecast"] is True

    res = cli("-C", sent, "status")
    assert res.exit_code == 0, res.stderr
    assert "finish not forecast" in res.stdout
    assert "`campaignctl plan` or `status --forecast`" in res.stdout

    forced = _json(cli, sent, "--forecast")
    assert forced["forecast"]["done"] is True
    assert forced["forecast"]["limit"] is None
    assert [c["finish"] for c in forced["campaigns"]] == [
        c["finish"] for c in forecast["campaigns"]
    ]
