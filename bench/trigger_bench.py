"""`campaignctl trigger` of one event against N leads (default 1,000,000): the audience
`lead.budget_max >= item.price and item.city in lead.areas`, with the event's values in place
of `item`, picked in SQL (`areas` a list for most leads, a text for some) and enrolled with
INSERT ... SELECT in the transaction that records the event (issue 12: <= 5 s for 1,000,000).
Then the same event again: recorded already, it enrols nobody.

    python bench/trigger_bench.py [N] [--window]
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time

from benchlib import ZONES, fresh_project, header, now

from campaignctl.leads.normalise import json_attr_object, json_strings
from campaignctl.store import Store
from campaignctl.store.sqlite import LeadInserts, connect_raw
from campaignctl.trigger import run

AUDIENCE = "lead.budget_max >= item.price and item.city in lead.areas"
CITIES = ["Makati", "Taguig", "Pasig", "Austin", "Quezon City"]
EVENT = {"id": "listing-42", "price": 3000000, "city": "Makati", "address": "12 Rada St"}


def generate(store: Store, n: int, seed: int = 1) -> float:
    """n leads through the import's insert, in one transaction; returns the seconds it took."""
    rng = random.Random(seed)
    assert store.path is not None
    conn = connect_raw(str(store.path))
    t0 = time.perf_counter()
    db = LeadInserts(conn, now())
    db.begin()
    for i in range(n):
        areas = rng.sample(CITIES, rng.randint(0, 3))
        budget = rng.choice(["1500000", "3000000", "4,500,000", "8000000"])
        attrs_json = json_attr_object({"budget_max": budget})  # a number, as the import stores
        # most leads: a list of areas; every tenth a text ("Makati; Pasig")
        value = "; ".join(areas) if i % 10 == 0 else areas
        attrs_json = attrs_json[:-1] + ',"areas":' + json.dumps(value) + "}"
        db.insert(
            (
                f"lead{i}@example.com",
                f"+1{rng.choice([212, 312, 415, 646])}{i:07d}",
                f"Name{i}",
                "Doe",
                rng.choice(ZONES),
                json_strings([]),
                attrs_json,
            )
        )
    db.commit()
    conn.close()
    return time.perf_counter() - t0


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 1_000_000
    window = 'window = "09:00-17:00"\n' if "--window" in sys.argv else ""
    toml = (
        header()
        + f"""
[channels.sms]
provider = "outbox"
kind = "sms"
{window}
[campaigns.new-listing]
kind = "trigger"
status = "active"
audience = "{AUDIENCE}"
[[campaigns.new-listing.steps]]
channel = "sms"
body = "{{{{ item.address }}}} just listed at {{{{ item.price }}}}. Reply STOP to opt out."
"""
    )
    cfg, store = fresh_project("trigger", toml)
    made = generate(store, n)
    print(f"generated {n:,} leads in {made:.1f} s (the import's insert)")
    t0 = time.perf_counter()
    result = run(cfg, store, "new-listing", dict(EVENT), now())
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    again = run(cfg, store, "new-listing", dict(EVENT), now())
    repeat = time.perf_counter() - t1
    assert again.duplicate is not None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    where = "per-lead due times" if window else "one due time"
    print(f"audience: {AUDIENCE}; event: {json.dumps(EVENT)}")
    print(
        f"trigger of one event over {n:,} leads (SQL, {where}): {elapsed:.2f} s, "
        f"{result.enrolled:,} enrolled ({result.enrolled / n:.1%}); the same event again: "
        f"{repeat * 1000:.0f} ms, enrolled nobody; peak RSS {rss:.0f} MiB"
    )
    store.close()


if __name__ == "__main__":
    main()
