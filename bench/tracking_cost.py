"""What click and open tracking costs `send`: an HTML email with 10 links, sent to the outbox
(on tmpfs when /dev/shm exists) without and with `track_clicks` + `track_opens`, alternately;
the medians, the difference, and the rewriting alone (microseconds per email), then peak RSS.

    python bench/tracking_cost.py [LEADS] [PAIRS]
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchlib import OUT, bulk_leads, header, now

from campaignctl.config import load
from campaignctl.engine import Engine
from campaignctl.runner import RunOptions, run
from campaignctl.store import Store
from campaignctl.web.links import Links
from campaignctl.web.rewrite import Tracker
from campaignctl.web.tokens import Signer

SECRET = "bench-signing-key-0123456789abcdef"
LINKS = "\n".join(
    f'<li><a href="https://homes.example/listing/{i}?ref=mail&amp;n={{{{ lead.first_name }}}}">'
    f"Listing {i}</a></li>"
    for i in range(10)
)
TEMPLATE = f"""<p>Hi {{{{ lead.first_name }}}}, ten homes for you:</p>
<ul>
{LINKS}
</ul>
<p>Questions? <a href="mailto:bench@example.com">Write to us</a>.</p>
"""


def measure(leads: int, outbox: str, tracked: bool) -> tuple[float, int]:
    server = f"""
[server]
public_base_url = "https://out.bench.example"
track_clicks = {str(tracked).lower()}
track_opens = {str(tracked).lower()}
"""
    toml = (
        header()
        + server
        + f"""
[channels.out]
provider = "outbox"
kind = "email"
path = "{outbox}"

[campaigns.bench]
status = "active"
[[campaigns.bench.steps]]
channel = "out"
subject = "Homes for {{{{ lead.first_name }}}}"
template = "homes.html.j2"
"""
    )
    folder = OUT / f"tracking-{'on' if tracked else 'off'}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "homes.html.j2").write_text(TEMPLATE)
    (folder / "campaigns.toml").write_text(toml)
    cfg = load(folder / "campaigns.toml")
    store = Store.for_config(cfg)
    bulk_leads(store, leads)
    engine = Engine(cfg, store)
    engine.enrol(now())
    t0 = time.perf_counter()
    result = run(engine, random.Random(1), RunOptions())
    elapsed = time.perf_counter() - t0
    sent = result.total.total("sent")
    assert sent == leads, sent
    store.close()
    return elapsed, sent


def rewrite_only(n: int) -> float:
    """Microseconds to rewrite one rendered email (10 links in HTML, 10 in text, the pixel)."""
    links = Links("https://out.bench.example", Signer([SECRET]))
    html = TEMPLATE.replace("{{ lead.first_name }}", "Maria")
    text = "\n".join(f"Listing {i}: https://homes.example/listing/{i}?ref=mail" for i in range(10))
    t0 = time.perf_counter()
    for i in range(n):
        Tracker(links, i, clicks=True, opens=True).bodies(text, html)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    leads = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.environ["CAMPAIGNCTL_SECRET"] = SECRET
    shm = Path("/dev/shm")
    outbox = str(shm / "campaignctl-bench-tracking") if shm.is_dir() else "outbox"
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(pairs):
        order = [False, True] if i % 2 == 0 else [True, False]
        for tracked in order:
            shutil.rmtree(outbox, ignore_errors=True)
            elapsed, sent = measure(leads, outbox, tracked)
            times[tracked].append(elapsed)
            label = "tracked  " if tracked else "untracked"
            print(
                f"pair {i + 1} {label}: {sent} emails in {elapsed:.2f} s = {sent / elapsed:,.0f}/s"
            )
    shutil.rmtree(outbox, ignore_errors=True)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"median: untracked {leads / off:,.0f} emails/s, tracked {leads / on:,.0f} emails/s; "
        f"tracking costs {(on / off - 1) * 100:+.1f}% of the time "
        f"({(on - off) / leads * 1e6:,.0f} us per email)"
    )
    print(f"rewriting alone: {rewrite_only(2000):,.0f} us per email (10 + 10 links and the pixel)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
