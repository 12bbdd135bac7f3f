"""`explain` on one lead of a large database: 1,000,000 leads and 3,000,000 messages.

The goal (issue 11): at most 200 ms. Measured two ways, on leads picked at random:
- `explain()` in this process (the queries and the timeline), median and worst of 21;
- the whole command, `python -m campaignctl explain EMAIL`, median of 7 (start-up included):
  wall time, CPU time (what the machine's load does not inflate) and peak RSS.

The database is built set-based with SQL straight on the file (leads, one enrolment and three
messages each, a journal row per lead, a hold on each channel): building takes a minute at 1M.

    python bench/explain_bench.py [LEADS]
"""

from __future__ import annotations

import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import timedelta

from benchlib import fresh_project, header, now

from campaignctl.explain import explain

TOML = """
[channels.email]
provider = "outbox"
daily_limit = 450

[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 250

[campaigns.welcome]
status = "active"
audience = "status == 'new' and 'buyer' in tags"
[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Hi"
body = "Hello"
[[campaigns.welcome.steps]]
name = "follow-up"
channel = "email"
delay = "2d"
thread = true
body = "Following up"
[[campaigns.welcome.steps]]
name = "nudge"
channel = "sms"
delay = "3d"
body = "Hi"

[campaigns.sellers]
status = "active"
audience = "'seller' in tags"
[[campaigns.sellers.steps]]
channel = "email"
subject = "Sell"
body = "Sell with us"
"""


def build(path: str, n: int) -> None:
    t0 = now().replace(tzinfo=None) - timedelta(days=10)
    day = timedelta(days=1)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    ts = t0.isoformat(sep=" ")
    db.execute(
        """
        WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
        INSERT INTO lead (id, email, phone, first_name, last_name, timezone, status, tags, attrs,
                          created_at, updated_at)
        SELECT i + 1, 'lead' || i || '@example.com', '+1212' || printf('%07d', i), 'Name' || i,
               'Doe', NULL, 'new',
               CASE i % 3 WHEN 0 THEN '["buyer"]' WHEN 1 THEN '["buyer","vip"]'
                          ELSE '["seller"]' END,
               json_object('budget_max', (i % 50) * 100000, 'city', 'Makati'), ?, ?
        FROM seq
        """,
        (n, ts, ts),
    )
    db.execute(
        "INSERT INTO journal (at, kind, lead_id, source, detail) "
        "SELECT created_at, 'lead.imported', id, 'import', "
        "json_object('file', 'leads.csv', 'line', id + 1) FROM lead"
    )
    db.execute(
        "INSERT INTO enrolment (campaign, lead_id, state, reason, enrolled_at, updated_at) "
        "SELECT 'welcome', id, 'active', NULL, created_at, created_at FROM lead"
    )
    for index, (step, channel, state, offset) in enumerate(
        [
            ("hello", "email", "sent", 0),
            ("follow-up", "email", "sent", 2),
            ("nudge", "sms", "pending", 5),
        ]
    ):
        due = (t0 + offset * day).isoformat(sep=" ")
        db.execute(
            f"""
            INSERT INTO message (campaign, step, step_index, lead_id, channel, state, due_at,
                                 attempts, sent_at, recipient, provider_id, updated_at)
            SELECT 'welcome', '{step}', {index}, id, '{channel}', '{state}', ?,
                   CASE WHEN '{state}' = 'sent' THEN 1 ELSE 0 END,
                   CASE WHEN '{state}' = 'sent' THEN ? END,
                   CASE WHEN '{state}' = 'sent' THEN email END,
                   CASE WHEN '{state}' = 'sent' THEN 'P' || id || '{index}' END, ?
            FROM lead
            """,
            (due, due, due),
        )
    for ch in ("email", "sms"):
        db.execute(
            "INSERT INTO journal (at, kind, channel, code, source, detail) VALUES "
            "(?, 'channel.held', ?, 'limit', 'engine', "
            "json_object('until', ?, 'reason', 'daily limit reached'))",
            (ts, ch, (t0 + day).isoformat()),
        )
    db.commit()
    print(
        "  built: "
        + ", ".join(
            f"{t} {db.execute(f'SELECT count(*) FROM {t}').fetchone()[0]:,}"
            for t in ("lead", "enrolment", "message", "journal")
        ),
        flush=True,
    )
    db.execute("ANALYZE")
    db.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    cfg, store = fresh_project("explain", header() + TOML)
    with store.read() as s:
        path = s.connection().engine.url.database
    assert path is not None
    t = time.perf_counter()
    build(path, n)
    print(f"{n:,} leads: database built in {time.perf_counter() - t:.0f} s", flush=True)
    rng = random.Random(7)
    picks = [f"lead{rng.randrange(n)}@example.com" for _ in range(21)]
    times, lines = [], 0
    for who in picks:
        t = time.perf_counter()
        found = explain(cfg, store, who, now())
        times.append(time.perf_counter() - t)
        lines += len(found.lines)
    store.close()
    print(
        f"  explain() in-process: median {statistics.median(times) * 1000:.1f} ms, "
        f"worst {max(times) * 1000:.1f} ms ({lines / len(picks):.1f} timeline lines per lead)"
    )
    walls, cpus, peak = [], [], 0
    folder = cfg.path.parent
    for who in picks[:7]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "campaignctl", "-C", str(folder), "explain", who],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        peak = max(peak, after.ru_maxrss)
    print(
        f"  `campaignctl explain` command: wall median {statistics.median(walls) * 1000:.0f} ms "
        f"(worst {max(walls) * 1000:.0f} ms), CPU median {statistics.median(cpus) * 1000:.0f} ms, "
        f"peak RSS {peak / 1024:.0f} MiB; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
