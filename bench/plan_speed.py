"""`plan` for 100,000 leads x 3 steps: seconds per forecast.

Two campaign files: the repository's example limits (email 450/day and 200/hour, SMS 250/day),
and the same with office hours on both channels (which needs each lead's local time, from its
phone number when it has no time zone). Two database states: freshly imported leads (the plan
evaluates every lead's audience) and leads already enrolled by a first `send` pass.

    python bench/plan_speed.py [LEADS]
    python bench/plan_speed.py --commands [LEADS] [--pairs N] [--anchor DIR]

`--commands` times `plan` as whole commands on freshly imported leads, each checkout's own,
against another checkout with `--anchor DIR` (A B A B, CPU beside wall): bench/plan_commands.py.
"""

from __future__ import annotations

import statistics
import sys
import time

from benchlib import bulk_leads, fresh_project, header, now

from campaignctl.engine import Engine
from campaignctl.planner import plan

STEPS = """
[campaigns.welcome]
status = "active"
audience = "status == 'new'"
[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Welcome, {{ lead.first_name }}"
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
body = "Hi {{ lead.first_name }}"
"""

CHANNELS = """
[channels.email]
provider = "outbox"
daily_limit = 450
hourly_limit = 200
{email_hours}
[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 250
per_second = 5
{sms_hours}
"""


def timed(cfg, store, label: str, repeat: int = 3) -> None:  # type: ignore[no-untyped-def]
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        p = plan(cfg, store, now(), days=30)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    c = p.campaigns["welcome"]
    print(
        f"  {label}: best {min(times):.2f} s, median {statistics.median(times):.2f} s "
        f"(CPU best {min(cpu):.2f} s) "
        f"({c.sends} sends simulated over 30 days, {c.remaining} left, "
        f"finish ~day {c.finish_day})"
    )


def main() -> None:
    if "--commands" in sys.argv:
        from plan_commands import main as commands

        commands([a for a in sys.argv[1:] if a != "--commands"])
        return
    leads = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for name, hours in (
        ("example limits", ("", "")),
        (
            "with office hours",
            ('window = "08:00-18:00"\ndays = "mon-fri"', 'window = "09:00-20:00"'),
        ),
    ):
        toml = header("Asia/Manila") + CHANNELS.format(email_hours=hours[0], sms_hours=hours[1])
        cfg, store = fresh_project("plan", toml + STEPS)
        bulk_leads(store, leads)
        print(f"{leads} leads x 3 steps, {name}:")
        timed(cfg, store, "fresh leads (each checked against the audience)")
        Engine(cfg, store, channels={}).enrol(now())
        timed(cfg, store, "after enrolment (pending messages loaded)")
        store.close()


if __name__ == "__main__":
    main()
