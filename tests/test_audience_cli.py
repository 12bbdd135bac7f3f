"""Audiences that fit real CSVs (issue 11, item 4), where the user meets them: `leads import`,
`send`, `status`, and the journal."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

from campaignctl.store import Store
from campaignctl.store import journal as store_journal
from tests.support import project

Cli = Callable[..., Result]

CAMPAIGN = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.rich]
status = "active"
audience = "lead.budget_max >= 3000000 and 'BUYER' in tags"
[[campaigns.rich.steps]]
name = "hello"
channel = "sms"
body = "Budget {{ lead.budget_max }}, zip {{ lead.zip | default('-') }}"
"""

CSV = """phone,first_name,tags,budget_max,zip
+12125550001,Ana,Buyer;VIP,"3,000,000",02134
+12125550002,Ben,BUYER,3000000.0,
+12125550003,Cy,buyer,2500000,
+12125550004,Di,Buyer,,
+12125550005,Ed,seller,9000000,
+12125550006,Fe,buyer,lots,
"""


def _send(cli: Cli, folder: Path) -> Result:
    res = cli("-C", folder, "send")
    assert res.exit_code == 0, res.stderr
    return res


def test_tags_and_numbers_from_a_csv_fit_the_audience(tmp_path: Path, cli: Cli) -> None:
    project(tmp_path, CAMPAIGN)
    (tmp_path / "leads.csv").write_text(CSV)
    assert cli("-C", tmp_path, "leads", "import", "leads.csv").exit_code == 0
    listed = json.loads(cli("-C", tmp_path, "leads", "list", "--format", "json").stdout)
    ana, ben = listed[0], listed[1]
    assert ana["tags"] == ["buyer", "vip"]  # stored lower-case
    assert (ana["budget_max"], ana["zip"]) == (3000000, "02134")  # zero-padded stays text
    assert ben["budget_max"] == 3000000.0
    assert listed[5]["budget_max"] == "lots"

    res = _send(cli, tmp_path)
    sent = [json.loads(p.read_text()) for p in (tmp_path / "outbox").glob("*.json")]
    bodies = sorted(m["body"] for m in sent)
    # Ana and Ben match; Cy is under budget, Di has no budget (no error), Ed is no buyer
    assert bodies == ["Budget 3000000, zip 02134", "Budget 3000000.0, zip -"]
    # Fe's budget is text: the audience cannot compare it, so Fe alone is skipped, with why
    assert "rich: 1 lead(s) skipped: campaigns.rich.audience: cannot evaluate" in res.stderr
    assert "'>=' not supported between instances of 'str' and 'int'" in res.stderr
    status = json.loads(cli("-C", tmp_path, "status", "--format", "json").stdout)
    (rich,) = status["campaigns"]
    assert rich["audience_skipped"]["count"] == 1


def test_an_audience_error_is_journalled_once_per_lead_and_campaign(
    tmp_path: Path, cli: Cli
) -> None:
    cfg = project(tmp_path, CAMPAIGN)
    (tmp_path / "leads.csv").write_text(CSV)
    assert cli("-C", tmp_path, "leads", "import", "leads.csv").exit_code == 0
    _send(cli, tmp_path)
    _send(cli, tmp_path)  # a second pass evaluates Fe again, and counts her again
    store = Store.for_config(cfg)
    with store.read() as s:
        rows = [
            r
            for lead_id in range(1, 7)
            for r in store_journal.for_lead(s, lead_id)
            if r.kind == "audience.error"
        ]
    assert len(rows) == 1
    (row,) = rows
    assert (row.lead_id, row.campaign, row.source) == (6, "rich", "engine")
    assert "not supported between instances of 'str' and 'int'" in row.detail["error"]
    assert "lots" not in json.dumps(row.detail)  # no personal data in the journal


def test_migration_lower_cases_tags_and_makes_numbers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    db = sqlite3.connect(tmp_path / "old.db")
    with db:
        db.execute(
            "INSERT INTO lead (email, tags, attrs, status, created_at, updated_at) VALUES "
            '(\'a@x.com\', \'["Buyer","BUYER","vip"]\', '
            '\'{"budget_max":"3,000,000","zip":"02134","n":"1.50"}\', '
            "'new', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
        )
        db.execute("DELETE FROM schema_migration WHERE name = 'm007_audience_values'")
    Store(url).close()  # an older database opened by this version
    tags, attrs = db.execute("SELECT tags, attrs FROM lead").fetchone()
    db.close()
    assert json.loads(tags) == ["buyer", "vip"]
    assert json.loads(attrs) == {"budget_max": 3000000, "zip": "02134", "n": 1.5}
