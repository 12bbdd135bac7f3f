"""What the suppression list costs: `plan` and `send` with an empty list and with one that
holds 1% of the leads' addresses (every channel), on the same leads.

The claim hashes the addresses of each batch of candidates and looks them up in one query;
`plan` reads the whole list and hashes every lead's email and phone once (only when the list
is not empty). Prints seconds for each and the peak RSS of this process.

    /work/venv/bin/python bench/suppression_cost.py [LEADS]
"""

from __future__ import annotations

import random
import resource
import sys
import time

from benchlib import bulk_leads, fresh_project, header, now

from campaignctl.engine import Engine
from campaignctl.leads.addresses import address_hash
from campaignctl.planner import plan
from campaignctl.runner import RunOptions, run
from campaignctl.store import meta
from campaignctl.store import suppression as store_suppression

TOML = """
[channels.out]
provider = "outbox"
kind = "email"
path = "{outbox}"

[campaigns.bench]
status = "active"
[[campaigns.bench.steps]]
channel = "out"
subject = "Hello"
body = "Hi {{{{ lead.first_name }}}}"
"""


def measure(leads: int, suppressed: int) -> tuple[float, float, int]:
    """(plan seconds, send seconds, messages skipped as suppressed)."""
    cfg, store = fresh_project(f"suppression-{suppressed}", header() + TOML.format(outbox="box"))
    bulk_leads(store, leads)
    t = now()
    if suppressed:
        with store.write() as s:
            key = meta.ensure_suppression_key(s, t)
            step = leads // suppressed
            rows = [
                {
                    "hash": address_hash(key, f"lead{i}@example.com"),
                    "channel": "*",
                    "source": "import",
                    "note": "bench",
                    "created_at": t,
                }
                for i in range(0, leads, step)
            ][:suppressed]
            store_suppression.add(s, rows)
    t0 = time.perf_counter()
    plan(cfg, store, t, days=2)
    planned = time.perf_counter() - t0
    engine = Engine(cfg, store)
    t0 = time.perf_counter()
    result = run(engine, random.Random(1), RunOptions())
    sent = time.perf_counter() - t0
    skipped = result.total.total("skipped")
    store.close()
    return planned, sent, skipped


def main() -> None:
    leads = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(f"{leads:,} leads, one email step, outbox channel without limits")
    for n in (0, leads // 100):
        planned, sent, skipped = measure(leads, n)
        print(
            f"  {n:>7,} suppressed: plan {planned:.2f} s, send {sent:.2f} s "
            f"({leads / sent:,.0f} messages/s), {skipped:,} skipped as suppressed"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
