"""`store.leads.rows_after` (the sample leads of `check` and `preview`, read as plain SQL) gives
each lead as templates see it, exactly as the ORM's `lead_context` does, on SQLite and
PostgreSQL: JSON tags and attributes decoded, unset fields left out, by id, a page at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from campaignctl.audience import row_context
from campaignctl.store import Lead, Store, lead_context
from campaignctl.store import leads as store_leads
from tests.support import add_leads, project

pytestmark = pytest.mark.usefixtures("db_url")

BODY = """
[channels.email]
provider = "outbox"
"""


def test_rows_after_are_the_leads_as_templates_see_them(tmp_path: Path) -> None:
    store = Store.for_config(project(tmp_path, BODY))
    add_leads(
        store,
        Lead(email="a@x.com", first_name="Ána", tags=["vip", "é"], attrs={"city": "Cebu", "n": 3}),
        Lead(phone="+639171234567", timezone="Asia/Manila", status="warm"),
        Lead(email="c@x.com", last_name="Cruz", attrs={"nested": {"k": [1, None]}, "blank": ""}),
    )
    with store.read() as s:
        expected = [lead_context(x) for x in s.exec(select(Lead).order_by(col(Lead.id)))]
    got: list[dict[str, Any]] = []
    pages: list[int] = []
    with store.reads() as r:
        last = 0
        while page := store_leads.rows_after(r, last, 2):
            pages.append(len(page))
            got += [row_context(row) for row in page]
            last = page[-1][0]
    assert pages == [2, 1]
    assert got == expected
    assert got[0]["tags"] == ["vip", "é"]
    assert got[2]["nested"] == {"k": [1, None]}
