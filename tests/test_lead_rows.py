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


def test_the_message_listing_reads_the_same_on_both_databases(tmp_path: Path) -> None:
    """`store.messages.listing` (plain SQL, `messages list`): the lead by its email, else its
    phone; times as aware UTC datetimes; every filter, `since` included."""
    import random
    from datetime import UTC, timedelta

    from campaignctl.engine import Engine
    from campaignctl.store import messages as store_messages
    from tests.support import T0
    from tests.test_dry_run_sample import UNLIMITED

    store = Store.for_config(cfg := project(tmp_path, UNLIMITED))
    _first, second = add_leads(
        store,
        Lead(phone="+12125550000", first_name="A"),
        Lead(email="b@x.com", phone="+12125550001", first_name="B"),
    )
    Engine(cfg, store).run_pass(T0, random.Random(1))
    with store.reads() as r:
        rows = list(store_messages.listing(r))
        assert [row[1] for row in rows] == ["+12125550000", "b@x.com"]
        assert [row[6] for row in rows] == ["sent", "sent"]
        assert all(row[13] == T0 and row[13].tzinfo is UTC for row in rows)
        assert [row[1] for row in store_messages.listing(r, lead_id=second)] == ["b@x.com"]
        assert list(store_messages.listing(r, state="pending")) == []
        assert len(list(store_messages.listing(r, campaign="welcome", step="hello"))) == 2
        assert len(list(store_messages.listing(r, since=T0 - timedelta(hours=1)))) == 2
        assert list(store_messages.listing(r, since=T0 + timedelta(days=3650))) == []
        # the filters' look-ups: a lead by its email or its phone, the campaigns with messages
        assert store_leads.id_by_address(r, "b@x.com") == second
        assert store_leads.id_by_address(r, "+12125550001") == second
        assert store_leads.id_by_address(r, "nobody@x.com") is None
        assert store_messages.campaign_names(r) == ["welcome"]
