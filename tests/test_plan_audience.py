"""`plan` enrols exactly the leads the next pass would, also when it remembers the audience's
answer per distinct status, time zone and tags as stored (planner._enrol)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from campaignctl.engine import Engine
from campaignctl.planner import plan
from campaignctl.store import Lead, Store
from tests.support import T0, project

AUDIENCES = [
    "status == 'new'",
    "timezone == 'Asia/Manila' or 'vip' in tags",
    "status != 'new' and not tags",
    "not timezone",
    "'vip' in tags and status in ('new', 'warm')",
]


@pytest.mark.parametrize("audience", AUDIENCES)
def test_plan_enrols_whom_the_engine_enrols(tmp_path: Path, audience: str) -> None:
    body = f"""
[channels.mail]
provider = "outbox"
kind = "email"

[campaigns.c]
status = "active"
audience = "{audience}"
[[campaigns.c.steps]]
channel = "mail"
subject = "Hi"
body = "Hi"
"""
    cfg = project(tmp_path, body)
    store = Store.for_config(cfg)
    rng = random.Random(audience)
    with store.write() as s:
        s.add_all(
            Lead(
                email=f"l{i}@ex.com",
                status=rng.choice(["new", "warm", "cold"]),
                timezone=rng.choice(["Asia/Manila", "UTC", None]),
                tags=rng.sample(["vip", "buyer"], rng.randint(0, 2)),
            )
            for i in range(200)
        )
    planned = plan(cfg, store, T0, days=3).campaigns["c"]
    enrolled = Engine(cfg, store, channels={}).enrol(T0)
    store.close()
    assert 0 < enrolled < 200
    assert planned.sends + planned.remaining == enrolled
