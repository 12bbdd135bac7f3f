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

from benchlib import fresh_project, header, import_leads, now

from campaignctl.leads.normalise import json_attr_object, json_strings
from campaignctl.trigger import run

AUDIENCE = "lead.budget_max >= item.price and item.city in lead.areas"
CITIES = ["Makati", "Taguig", "Pasig", "Austin", "Quezon City"]
EVENT = {"id": "listing-42", "price": 3000000, "city": "Makati", "address": "12 Rada St"}


def lead(i: int, rng: random.Random) -> tuple[str, str]:
    """Lead i's tags (none) and attributes: a budget, and the areas it wants."""
    areas = rng.sample(CITIES, rng.randint(0, 3))
    budget = rng.choice(["1500000", "3000000", "4,500,000", "8000000"])
    attrs_json = json_attr_object({"budget_max": budget})  # a number, as the import stores
    # most leads: a list of areas; every tenth a text ("Makati; Pasig")
    value = "; ".join(areas) if i % 10 == 0 else areas
    return json_strings([]), attrs_json[:-1] + ',"areas":' + json.dumps(value) + "}"


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
    made = import_leads(store, n, lead)
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
