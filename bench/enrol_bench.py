"""Enrolment of a large audience: the first pass over N leads (default 1,000,000) against
`lead.budget_max >= 3000000 and 'buyer' in tags`, picked in SQL and enrolled with
INSERT ... SELECT (issue 11: <= 10 s for 1,000,000 leads).

The leads are written through the leads import's own insert (`store.sqlite.LeadInserts`, with
the import's JSON encoding: numbers stored as numbers, tags lower-case). `--window` gives the
channel sending hours, so each first message's due time depends on the lead's zone (one INSERT
for the enrolments, then executemany for the messages). `--python` evaluates the audience lead
by lead in Python, as every pass did before issue 11. `--all`: no audience, so every lead enrols
(issue 15: a first pass over 1,000,000 new leads enrols them all in <= 15 s, with or without
`--window`).

Audiences SQL genuinely cannot decide (issue 15: <= 15 s for 1,000,000 leads, batched):
`--opaque` (`lead.city|lower != 'austin' and ...`: a filter, so Python decides every lead; it
reads three fields of few values, remembered per distinct value) and `--opaque-wide`
(`lead|length >= 3 and ...`: it reads the lead as a whole, so every lead is evaluated).

    python bench/enrol_bench.py [N] [--window] [--python | --opaque | --opaque-wide | --all]
"""

from __future__ import annotations

import random
import resource
import sys
import time

from benchlib import fresh_project, header, import_leads, now

from campaignctl.engine import Engine
from campaignctl.leads.normalise import json_attr_object, json_strings

AUDIENCE = "lead.budget_max >= 3000000 and 'buyer' in tags"
OPAQUE = "lead.city|lower != 'austin' and " + AUDIENCE
OPAQUE_WIDE = "lead|length >= 3 and " + AUDIENCE
TAGS = [["Buyer"], ["buyer", "VIP"], ["seller"], []]
BUDGETS = ["1,500,000", "3000000", "3,000,000", "4500000.0", "2999999", "8,000,000", ""]


def lead(i: int, rng: random.Random) -> tuple[str, str]:
    """Lead i's tags and attributes: mixed-case tags, budgets written every way a CSV has them."""
    tags = json_strings(dict.fromkeys(t.lower() for t in rng.choice(TAGS)))
    budget = rng.choice(BUDGETS)
    attrs = {"city": rng.choice(["Makati", "Taguig", "Austin"]), "zip": f"{i % 99999:05d}"}
    if budget:
        attrs["budget_max"] = budget
    return tags, json_attr_object(attrs)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 1_000_000
    window = 'window = "09:00-17:00"\n' if "--window" in sys.argv else ""
    expr = AUDIENCE
    if "--opaque" in sys.argv:
        expr = OPAQUE
    elif "--opaque-wide" in sys.argv:
        expr = OPAQUE_WIDE
    audience = "" if "--all" in sys.argv else f'audience = "{expr}"\n'
    toml = (
        header()
        + f"""
[channels.sms]
provider = "outbox"
kind = "sms"
{window}
[campaigns.rich]
status = "active"
{audience}[[campaigns.rich.steps]]
channel = "sms"
body = "Hi {{{{ lead.first_name }}}}"
"""
    )
    cfg, store = fresh_project("enrol", toml)
    made = import_leads(store, n, lead)
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
    how = "SQL"
    if "--python" in sys.argv:
        how = "Python, lead by lead"
    elif expr != AUDIENCE:
        how = "Python: SQL cannot decide it"
    where = "per-lead due times" if window else "one due time"
    print(f"audience: {expr if audience else 'none (every lead)'}")
    print(
        f"enrolment pass over {n:,} leads ({how}, {where}): {elapsed:.2f} s (CPU {cpu:.2f} s), "
        f"{enrolled:,} enrolled ({enrolled / n:.1%}); peak RSS {rss:.0f} MiB"
    )
    store.close()


if __name__ == "__main__":
    main()
