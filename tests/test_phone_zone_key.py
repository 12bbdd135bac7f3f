"""Numbers sharing `pacing.phone_zone_key` share a zone: the planner remembers each lead's zone
per key (`planner._Leads`), and answers as `pacing.lead_zone` asked of every lead."""

from __future__ import annotations

import random
from collections import defaultdict

from campaignctl import pacing, planner
from tests.test_phone_zone import generated, public


def test_numbers_with_one_key_have_one_zone() -> None:
    zones: dict[str, set[str | None]] = defaultdict(set)
    numbers = generated(50_000, seed=16) + public()
    for phone in numbers:
        key = pacing.phone_zone_key(phone)
        if key is not None:
            assert phone.startswith(key)
            zones[key].add(pacing.phone_zone_of.__wrapped__(phone, "Asia/Manila"))
    assert len(zones) > 1000
    assert all(len(z) == 1 for z in zones.values())
    assert pacing.phone_zone_key("212555") is None  # not E.164: the whole number is looked at


def test_the_planners_zones_are_each_leads_own() -> None:
    rng = random.Random(3)
    numbers = generated(20_000, seed=17) + public()
    leads = planner._Leads("Asia/Manila", zones=True)
    rows = []
    for i, phone in enumerate(numbers, start=1):
        timezone = rng.choice([None, "", "Europe/Paris", "Not/AZone"])
        rows.append((i, phone, timezone))
        leads.add(i, None, phone, timezone)
    for i, phone, timezone in rows:
        assert leads.tz(i) is pacing.lead_zone(timezone, phone, "Asia/Manila"), (phone, timezone)
