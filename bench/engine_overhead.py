"""Engine overhead through the outbox channel with no limits: messages per second.

Every message is claimed (`sending`) and recorded (`sent`) in SQLite with synchronous=FULL, as in
production; claims are batched (one transaction for up to 100 claims, one for their outcomes).
The outbox folder sits on tmpfs when /dev/shm exists, so the figure is our own work rather than
the file system's; a second run writes the outbox to disk for comparison.

    python bench/engine_overhead.py --commands [LEADS] [--pairs N] [--anchor DIR] [--kind K]
    python bench/engine_overhead.py [LEADS] [MAX_PER_LEAD] [KINDS] [--ab-pairs N]

`--commands` (issue 15 #6) times whole `campaignctl send` commands on LEADS (default 20,000)
messages, email and SMS, each against another checkout with `--anchor DIR` (A B A B, median
of the pairs' ratios, CPU seconds beside wall): see bench/engine_commands.py. The other modes
time the engine's pass in this process.

MAX_PER_LEAD sets `settings.max_per_lead` (e.g. `1000/1d`, high enough to defer nothing: the
cost of the frequency cap's look-up), `-` for none; KINDS picks runs (`sms-tmpfs`, default all).

`--ab-pairs N` measures what A/B assignment costs instead: SMS to tmpfs, a step with two
variants, without and with an `ab` table (test_fraction = 1, so every lead is in the test and
sends at once: the hash and the tests' state are paid on every message), N runs of each taken
alternately, then the medians and the difference.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from benchlib import bulk_leads, fresh_project, header, now

from campaignctl.engine import Engine
from campaignctl.runner import RunOptions, run

VARIANTS = """
[[campaigns.bench.steps.variants]]
name = "A"
[[campaigns.bench.steps.variants]]
name = "B"
body = "Hey {{ lead.first_name }}, another short note from the benchmark."
"""
AB = """
[campaigns.bench.steps.ab]
test_fraction = 1.0
wait = "2d"
fallback = "A"
"""


def measure(
    leads: int, kind: str, outbox: str, step: str = "", cap: str | None = None
) -> tuple[float, float, int, float]:
    settings = header().replace("[settings]\n", f'[settings]\nmax_per_lead = "{cap}"\n')
    toml = (
        (settings if cap else header())
        + f"""
[channels.out]
provider = "outbox"
kind = "{kind}"
path = "{outbox}"

[campaigns.bench]
status = "active"
[[campaigns.bench.steps]]
channel = "out"
subject = "Hello {{{{ lead.first_name }}}}"
body = "Hi {{{{ lead.first_name }}}}, a short note from the benchmark."
"""
        + step
    )
    cfg, store = fresh_project(f"overhead-{kind}", toml)
    bulk_leads(store, leads)
    engine = Engine(cfg, store)
    t0 = time.perf_counter()
    engine.enrol(now())
    enrol = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    result = run(engine, random.Random(1), RunOptions())  # the loop of passes `send` runs
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0  # steadier than wall time on a shared machine
    sent = result.total.total("sent")
    assert sent == leads, sent
    store.close()
    return enrol, elapsed, sent, cpu


def ab_pairs(leads: int, pairs: int, tmpfs: str) -> None:
    """Two variants without and with an `ab` table, alternately; medians and the difference."""
    import shutil
    import statistics

    times: dict[str, list[float]] = {"variants": [], "variants + ab": []}
    for i in range(pairs):
        order = [("variants", VARIANTS), ("variants + ab", VARIANTS + AB)]
        for name, step in order if i % 2 == 0 else order[::-1]:
            shutil.rmtree(tmpfs, ignore_errors=True)
            _, elapsed, sent, _cpu = measure(leads, "sms", tmpfs, step)
            times[name].append(elapsed)
            print(
                f"pair {i + 1} {name:13}: {sent} messages in {elapsed:.2f} s "
                f"= {sent / elapsed:,.0f} msg/s"
            )
    shutil.rmtree(tmpfs, ignore_errors=True)
    base, ab = (statistics.median(times[k]) for k in times)
    print(
        f"median: variants {leads / base:,.0f} msg/s, variants + ab {leads / ab:,.0f} msg/s; "
        f"A/B assignment costs {(ab / base - 1) * 100:+.1f}% of the time"
    )


def main() -> None:
    if "--commands" in sys.argv:
        from engine_commands import main as commands

        commands([a for a in sys.argv[1:] if a != "--commands"])
        return
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--ab-pairs" in sys.argv:
        args = args[:1]
    leads = int(args[0]) if args else 20_000
    cap = args[1] if len(args) > 1 and args[1] != "-" else None
    only = args[2].split(",") if len(args) > 2 else None
    shm = Path("/dev/shm")
    tmpfs = str(shm / "campaignctl-bench-outbox") if shm.is_dir() else "outbox"
    if "--ab-pairs" in sys.argv:
        ab_pairs(leads, int(sys.argv[sys.argv.index("--ab-pairs") + 1]), tmpfs)
        return
    for kind, outbox, where in (
        ("sms", tmpfs, "tmpfs outbox"),
        ("sms", "outbox", "disk outbox"),
        ("email", tmpfs, "tmpfs outbox"),
    ):
        import shutil

        if only is not None and f"{kind}-{where.split()[0]}" not in only:
            continue
        shutil.rmtree(outbox, ignore_errors=True) if outbox.startswith("/dev/shm") else None
        enrol, elapsed, sent, cpu = measure(leads, kind, outbox, cap=cap)
        with_cap = f", max_per_lead {cap}" if cap else ""
        print(
            f"{kind:5} ({where}{with_cap}): {sent} messages in {elapsed:.2f} s = "
            f"{sent / elapsed:,.0f} msg/s ({elapsed / sent * 1000:.3f} ms each); "
            f"enrolment {enrol:.2f} s; CPU {cpu:.2f} s"
        )
        if outbox.startswith("/dev/shm"):
            shutil.rmtree(outbox, ignore_errors=True)


if __name__ == "__main__":
    main()
