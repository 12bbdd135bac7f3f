"""`messages list --format csv` over 1,000,000 messages to /dev/null: rows/s and peak RSS.

The database is generated here: 100,000 leads, then ten messages each (sent, skipped, pending,
with reasons, provider ids and times) inserted raw through the store in batches. The command
runs as a real `campaignctl` process; its peak RSS is its VmHWM, polled (goal: <= 100 MiB, the
rows streamed from the database's cursor, never held).

    python bench/messages_list.py [MESSAGES]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

from benchlib import REPO, bulk_leads, fresh_project, header, now

TOML = """
[channels.email]
provider = "outbox"

[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Hi"
body = "Hello"
"""
GOAL_MIB = 100
PER_LEAD = 10


def fill(store, messages: int) -> None:  # type: ignore[no-untyped-def]
    """`messages` message rows over messages/10 leads, in batches of 50,000."""
    from sqlalchemy import insert

    from campaignctl.store.schema import MESSAGE

    leads = max(1, messages // PER_LEAD)
    bulk_leads(store, leads)
    t0 = now()
    batch: list[dict[str, object]] = []

    def flush() -> None:
        with store.write() as s:
            s.connection().execute(insert(MESSAGE), batch)
        batch.clear()

    for i in range(messages):
        lead, step = divmod(i, PER_LEAD)
        state = ("sent", "sent", "skipped", "pending")[i % 4]
        t = t0 - timedelta(minutes=i % 10_000)
        batch.append(
            {
                "campaign": f"camp{step % 3}",
                "step": f"step{step}",
                "step_index": step,
                "lead_id": lead + 1,
                "channel": "sms" if step % 2 else "email",
                "variant": "a" if i % 5 == 0 else None,
                "state": state,
                "due_at": t,
                "attempts": 1 if state == "sent" else 0,
                "claimed_at": t if state == "sent" else None,
                "sent_at": t if state == "sent" else None,
                "provider_id": f"SM{i:032x}" if state == "sent" else None,
                "reason": "lead has no phone number" if state == "skipped" else None,
                "reason_code": "no_address" if state == "skipped" else None,
                "updated_at": t,
            }
        )
        if len(batch) >= 50_000:
            flush()
    if batch:
        flush()


def peak_mib(pid: int) -> float:
    """The process's peak RSS so far (VmHWM), in MiB; 0 once it is gone.

    Read from /proc rather than wait4's ru_maxrss: that one also counts the pages the child
    shared with this (large) process between fork and exec."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    cfg, store = fresh_project("messages_list", header() + TOML)
    t0 = time.perf_counter()
    fill(store, messages)
    store.close()
    print(f"{messages:,} messages generated in {time.perf_counter() - t0:.1f} s")
    folder = cfg.path.parent
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(folder)]
    cmd += ["messages", "list", "--format", "csv"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(os.devnull, "w") as devnull:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=devnull, env=env)
        rss = 0.0
        while proc.poll() is None:
            rss = max(rss, peak_mib(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"messages list failed: exit {proc.returncode}")
        return 1
    print(
        f"messages list --format csv > /dev/null: {wall:.1f} s, {messages / wall:,.0f} rows/s, "
        f"peak RSS {rss:.1f} MiB (goal <= {GOAL_MIB} MiB)"
    )
    return 0 if rss <= GOAL_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
