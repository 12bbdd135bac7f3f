"""The planner reads of its newcomers only the columns their audience reads
(`store.leads.plan_newcomers`), on SQLite and PostgreSQL: the others come back as None, and a
`plan` whose audience reads a lead's name or attributes still sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaignctl.config import Config
from campaignctl.planner import plan
from campaignctl.store import Lead, Store
from campaignctl.store import leads as store_leads
from tests.support import T0, project

pytestmark = pytest.mark.usefixtures("db_url")

BODY = """
[channels.email]
provider = "outbox"

[campaigns.c]
status = "active"
audience = "{audience}"
[[campaigns.c.steps]]
channel = "email"
subject = "Hi"
body = "Hi"
"""


def _store(tmp_path: Path, audience: str) -> tuple[Config, Store]:
    cfg = project(tmp_path, BODY.format(audience=audience))
    store = Store.for_config(cfg)
    with store.write() as s:
        s.add_all(
            [
                Lead(
                    email="a@x.com",
                    first_name="Ana",
                    last_name="Cruz",
                    timezone="Asia/Manila",
                    status="new",
                    tags=["vip"],
                    attrs={"beds": 3},
                ),
                Lead(email="b@x.com", first_name="Ben", status="won", tags=[], attrs={"beds": 1}),
            ]
        )
    return cfg, store


def test_only_the_columns_asked_for_are_read(tmp_path: Path) -> None:
    _cfg, store = _store(tmp_path, "status == 'new'")
    with store.reading() as conn:
        every = [tuple(r) for r in store_leads.plan_newcomers(conn, "c")]
        some = [tuple(r) for r in store_leads.plan_newcomers(conn, "c", frozenset({"status"}))]
    store.close()
    assert [r[3:7] for r in every] == [
        ("Ana", "Cruz", "Asia/Manila", "new"),
        ("Ben", None, None, "won"),
    ]
    assert '"vip"' in every[0][7]
    assert '"beds"' in every[0][8]
    assert [r[:3] for r in some] == [r[:3] for r in every]
    assert [r[3:] for r in some] == [
        (None, None, None, "new", None, None),
        (None, None, None, "won", None, None),
    ]


@pytest.mark.parametrize(
    ("audience", "sends"),
    [
        ("first_name == 'Ana'", 1),
        ("beds > 2", 1),
        ("'vip' in tags", 1),
        ("lead.last_name", 1),
        ("status != 'x'", 2),
    ],
)
def test_plan_sees_what_its_audience_reads(tmp_path: Path, audience: str, sends: int) -> None:
    cfg, store = _store(tmp_path, audience)
    p = plan(cfg, store, T0, days=2, horizon_days=2)
    store.close()
    assert p.campaigns["c"].sends == sends
