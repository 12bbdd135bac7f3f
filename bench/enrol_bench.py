"""Enrolment of a large audience: the first pass over N leads (default 1,000,000) against
`lead.budget_max >= 3000000 and 'buyer' in tags`, picked in SQL and enrolled with
INSERT ... SELECT (issue 11: <= 10 s for 1,000,000 leads).

The leads are written through the leads import's own insert (`store.sqlite.LeadInserts`, with
the import's JSON encoding: numbers stored as numbers, tags lower-case). `--window` gives the
channel sending hours, so each first message's due time depends on the lead's zone (one INSERT
for the enrolments, then executemany for the messages). `--python` evaluates the audience lead
by lead in Python, as every pass did before issue 11 (for comparison, on a smaller N).

    python bench/enrol_bench.py [N] [--window] [--python]
"""

from __future__ import annotations

import random
import resource
import sys
import time

from benchlib import ZONES, fresh_project, header, now

from campaignctl.engine import Engine
from campaignctl.leads.normalise import json_attr_object, json_strings
from campaignctl.store import Store
from campaignctl.store.sqlite import LeadInserts, connect_raw

AUDIENCE = "lead.budget_max >= 3000000 and 'buyer' in tags"
TAGS = [["Buyer"], ["buyer", "VIP"], ["seller"], []]
BUDGETS = ["1,500,000", "3000000", "3,000,000", "4500000.0", "2999999", "8,000,000", ""]


def generate(store: Store, n: int, seed: int = 1) -> float:
    """n leads through the import's insert, in one transaction; returns the seconds it took."""
    rng = random.Random(seed)
    assert store.path is not None
    conn = connect_raw(str(store.path))
    t0 = time.perf_counter()
    db = LeadInserts(conn, now())
    db.begin()
    for i in range(n):
        tags = json_strings(dict.fromkeys(t.lower() for t in rng.choice(TAGS)))
        budget = rng.choice(BUDGETS)
        attrs = {"city": rng.choice(["Makati", "Taguig", "Austin"]), "zip": f"{i % 99999:05d}"}
        if budget:
            attrs["budget_max"] = budget
        db.insert(
            (
                f"lead{i}@example.com",
                f"+1{rng.choice([212, 312, 415, 646])}{i:07d}",
                f"Name{i}",
                "Doe",
                rng.choice(ZONES),
                tags,
                json_attr_object(attrs),
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
[campaigns.rich]
status = "active"
audience = "{AUDIENCE}"
[[campaigns.rich.steps]]
channel = "sms"
body = "Hi {{{{ lead.first_name }}}}"
"""
    )
    cfg, store = fresh_project("enrol", toml)
    made = generate(store, n)
    print(f"generated {n:,} leads in {made:.1f} s (the import's insert)")
    if "--python" in sys.argv:
        import campaignctl.engine.enrol as enrol
        from campaignctl.audience import Opaque

        enrol.condition = lambda _expr: Opaque()  # type: ignore[assignment,misc,return-value]
    engine = Engine(cfg, store)
    t0, c0 = time.perf_counter(), time.process_time()
    enrolled = engine.enrol(now())
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    how = "Python, lead by lead" if "--python" in sys.argv else "SQL"
    where = "per-lead due times" if window else "one due time"
    print(f"audience: {AUDIENCE}")
    print(
        f"enrolment pass over {n:,} leads ({how}, {where}): {elapsed:.2f} s (CPU {cpu:.2f} s), "
        f"{enrolled:,} enrolled ({enrolled / n:.1%}); peak RSS {rss:.0f} MiB"
    )
    store.close()


if __name__ == "__main__":
    main()
