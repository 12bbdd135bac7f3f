"""Engine overhead through the outbox channel with no limits: messages per second.

Every message is claimed (`sending`) and recorded (`sent`) in SQLite with synchronous=FULL, as in
production; claims are batched (one transaction for up to 100 claims, one for their outcomes).
The outbox folder sits on tmpfs when /dev/shm exists, so the figure is our own work rather than
the file system's; a second run writes the outbox to disk for comparison.

    /work/venv/bin/python bench/engine_overhead.py [LEADS] [MAX_PER_LEAD] [KINDS]

MAX_PER_LEAD sets `settings.max_per_lead` (e.g. `1000/1d`, high enough to defer nothing: the
cost of the frequency cap's look-up), `-` for none; KINDS picks runs (`sms-tmpfs`, default all).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from benchlib import bulk_leads, fresh_project, header, now

from campaignctl.engine import Engine
from campaignctl.runner import RunOptions, run


def measure(leads: int, kind: str, outbox: str, cap: str | None = None) -> tuple[float, float, int]:
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


def main() -> None:
    leads = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    cap = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
    shm = Path("/dev/shm")
    tmpfs = str(shm / "campaignctl-bench-outbox") if shm.is_dir() else "outbox"
    for kind, outbox, where in (
        ("sms", tmpfs, "tmpfs outbox"),
        ("sms", "outbox", "disk outbox"),
        ("email", tmpfs, "tmpfs outbox"),
    ):
        import shutil

        if only is not None and f"{kind}-{where.split()[0]}" not in only:
            continue
        shutil.rmtree(outbox, ignore_errors=True) if outbox.startswith("/dev/shm") else None
        enrol, elapsed, sent, cpu = measure(leads, kind, outbox, cap)
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
