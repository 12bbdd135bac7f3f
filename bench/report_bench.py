"""`report --format html` for a campaign of 1,000,000 messages: seconds, peak RSS, file size.

The database is generated here: MESSAGES/3 leads enrolled in one sequence of three steps (two
email steps, the first with variants A and B and an A/B decision, then an SMS step), sent over
60 days; about 2% failed (with error codes), and events as a real campaign's sync records them:
deliveries (70%), undeliveries and bounces, replies (matched to the message, and a third from
the lead in a new thread), opt-outs, and clicks (a fifth of them machine hits). The command runs
as a real `campaignctl` process; its peak RSS is its VmHWM, polled (goals: <= 3 s, <= 150 MiB:
the figures are counted in SQL, never a message loaded).

    python bench/report_bench.py [MESSAGES]
    python bench/report_bench.py [MESSAGES] --anchor DIR [--pairs N]

With `--anchor DIR` (another checkout, e.g. `git worktree add /tmp/anchor <commit>`), the same
command runs from this checkout and from DIR, A B A B (N pairs, default 3), and the medians and
the median of the pairs' ratios are printed. The generated database is kept in
bench/out/report and used again while its size matches (`complete` says which size).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchlib import OUT, REPO, bulk_leads, fresh_project, header
from messages_list import peak_mib

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
[[campaigns.welcome.steps.variants]]
name = "A"
subject = "Hi"
[[campaigns.welcome.steps.variants]]
name = "B"
subject = "Hello there"
[[campaigns.welcome.steps]]
name = "follow-up"
channel = "email"
delay = "2d"
subject = "Following up"
body = "Following up"
[[campaigns.welcome.steps]]
name = "nudge"
channel = "sms"
delay = "3d"
body = "Hi"
"""
GOAL_S = 3.0
GOAL_MIB = 150
STEPS = (("hello", "email"), ("follow-up", "email"), ("nudge", "sms"))
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
CODES = ("mailbox_full", "invalid_recipient", "rejected", "unreachable")


def fill(store, messages: int) -> None:  # type: ignore[no-untyped-def]
    """The campaign's enrolments, messages and events, inserted in batches of 50,000."""
    from sqlalchemy import insert

    from campaignctl.store.schema import AB_DECISION, ENROLMENT, EVENT, MESSAGE

    leads = -(-messages // len(STEPS))
    bulk_leads(store, leads)
    rng = random.Random(7)
    with store.write() as s:
        s.connection().execute(
            insert(ENROLMENT),
            [
                {
                    "campaign": "welcome",
                    "lead_id": i + 1,
                    "state": "active",
                    "enrolled_at": START,
                    "updated_at": START,
                }
                for i in range(leads)
            ],
        )
        s.connection().execute(
            insert(AB_DECISION),
            [
                {
                    "campaign": "welcome",
                    "step": "hello",
                    "decided_at": START + timedelta(days=3),
                    "winner": "B",
                    "metric": "reply_rate",
                    "rule": "significant",
                    "reason": "B beat A: p = 0.0121 < 0.05",
                    "z": 2.51,
                    "p_value": 0.0121,
                    "confidence": 0.95,
                    "figures": {"A": {"sends": 1000, "successes": 30}},
                }
            ],
        )
    msgs: list[dict[str, object]] = []
    events: list[dict[str, object]] = []

    def flush() -> None:
        with store.write() as s:
            if msgs:
                s.connection().execute(insert(MESSAGE), msgs)
            if events:
                s.connection().execute(insert(EVENT), events)
        msgs.clear()
        events.clear()

    for i in range(messages):
        lead, k = divmod(i, len(STEPS))
        step, channel = STEPS[k]
        mid = i + 1
        at = START + timedelta(minutes=rng.randrange(60 * 24 * 60))
        failed = rng.random() < 0.02
        msgs.append(
            {
                "id": mid,
                "campaign": "welcome",
                "step": step,
                "step_index": k,
                "lead_id": lead + 1,
                "channel": channel,
                "variant": ("A", "B")[lead % 2] if k == 0 else None,
                "state": "failed" if failed else "sent",
                "due_at": at,
                "attempts": 1,
                "claimed_at": at,
                "sent_at": None if failed else at,
                "error_code": rng.choice(CODES) if failed else None,
                "updated_at": at,
            }
        )
        if not failed:
            r = rng.random()
            kind = "delivered" if r < 0.7 else "undelivered" if r < 0.72 else None
            if r >= 0.995:
                kind = "bounce"
            later = at + timedelta(minutes=rng.randrange(1, 600))
            for kind_, message_id, lead_id, detail in (
                (kind, mid, lead + 1, {}),
                *((("reply", mid, lead + 1, {}),) if rng.random() < 0.02 else ()),
                *((("reply", None, lead + 1, {}),) if rng.random() < 0.01 else ()),
                *((("optout", mid, lead + 1, {}),) if rng.random() < 0.005 else ()),
                *(
                    (("click", mid, lead + 1, {"machine": rng.random() < 0.2}),)
                    if channel == "email" and rng.random() < 0.05
                    else ()
                ),
            ):
                if kind_ is not None:
                    events.append(
                        {
                            "lead_id": lead_id,
                            "message_id": message_id,
                            "channel": channel,
                            "kind": kind_,
                            "detail": detail,
                            "occurred_at": later,
                            "recorded_at": later,
                        }
                    )
        if len(msgs) >= 50_000:
            flush()
    flush()


def project(messages: int) -> Path:
    """bench/out/report, holding the generated campaign of `messages` messages (generated again
    unless it was the last one generated)."""
    folder = OUT / "report"
    done = folder / "complete"
    if done.exists() and done.read_text() == str(messages):
        return folder
    cfg, store = fresh_project("report", header("Asia/Manila") + TOML)
    t0 = time.perf_counter()
    fill(store, messages)
    store.close()
    print(f"{messages:,} messages and their events generated in {time.perf_counter() - t0:.1f} s")
    done.write_text(str(messages))
    return cfg.path.parent


def once(code: Path, folder: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one `report --format html` run by the checkout `code`
    (run from that checkout: `python -m` puts the working directory first on sys.path)."""
    out = folder / "report.html"
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(folder)]
    cmd += ["report", "welcome", "--format", "html", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(code)}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, cwd=code)
    rss = 0.0
    while proc.poll() is None:
        rss = max(rss, peak_mib(proc.pid))
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"report by {code} failed: exit {proc.returncode}")
    return wall, cpu, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("messages", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--anchor", type=Path, help="another checkout to pair against")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    messages = args.messages
    folder = project(messages)
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    if args.anchor is None:
        wall, cpu, rss = once(REPO, folder)
        size = (folder / "report.html").stat().st_size
        print(
            f"report welcome --format html ({messages:,} messages): {wall:.2f} s "
            f"(goal <= {GOAL_S:.0f} s), peak RSS {rss:.1f} MiB (goal <= {GOAL_MIB} MiB), "
            f"{size / 1024:.0f} KiB of HTML; {cpu:.2f} s of CPU ({load})"
        )
        return 0 if wall <= GOAL_S and rss <= GOAL_MIB else 1
    once(REPO, folder)  # the database's pages read once, before the first pair
    this: list[tuple[float, float, float]] = []
    anchor: list[tuple[float, float, float]] = []
    for _ in range(args.pairs):
        anchor.append(once(args.anchor.resolve(), folder))
        this.append(once(REPO, folder))
    med = statistics.median
    ratio = med(a[0] / b[0] for a, b in zip(this, anchor, strict=True))
    cpu_ratio = med(a[1] / b[1] for a, b in zip(this, anchor, strict=True))
    print(
        f"report welcome --format html ({messages:,} messages), {args.pairs} pairs, {load}:\n"
        f"  this   wall {med(t[0] for t in this):.2f} s, CPU {med(t[1] for t in this):.2f} s, "
        f"peak RSS {max(t[2] for t in this):.1f} MiB\n"
        f"  anchor wall {med(t[0] for t in anchor):.2f} s, CPU {med(t[1] for t in anchor):.2f} s, "
        f"peak RSS {max(t[2] for t in anchor):.1f} MiB\n"
        f"  ratio  wall {ratio:.2f}, CPU {cpu_ratio:.2f} (goal: this <= {GOAL_S:.0f} s)"
    )
    return 0 if med(t[0] for t in this) <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
