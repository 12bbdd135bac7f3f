"""Peak RSS of the commands that read every lead, at 1,000,000 leads (issue 15 #1: <= 150 MiB).

The database is generated here once and cached under bench/out/memory_1m/LEADS/ (a second run
reuses it): LEADS leads written through the import's own insert, and the welcome campaign of
plan_speed.py (3 steps, email and SMS, the example's limits). Each command runs as a whole
`campaignctl` process whose peak RSS is its VmHWM, polled from /proc.

With `--anchor DIR` (a checkout of the commit to compare with, e.g. `git worktree add
/tmp/anchor15 4b975a0`), each command runs there too, A B A B, and the ratio of the medians is
printed. `send` runs on a copy of the database, and only with `--send`: its first pass enrols
every lead (the audience `status == 'new'` picks them in SQL), then sends what the example's
limits let go in one run (an hourly limit of 200 emails).

    python bench/memory_1m.py [LEADS] [--anchor DIR] [--runs N] [--send] [--only NAME]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import OUT, REPO, header, import_leads
from messages_list import peak_mib

TOML = """
[channels.email]
provider = "outbox"
daily_limit = 450
hourly_limit = 200

[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 250
per_second = 5

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
GOAL_MIB = 150
COMMANDS = {
    "plan": ["plan"],
    "status": ["status"],
    "leads-table": ["leads", "list"],
    "leads-csv": ["leads", "list", "--format", "csv"],
    "leads-json": ["leads", "list", "--format", "json"],
    "messages-csv": ["messages", "list", "--format", "csv"],
}


def database(leads: int) -> Path:
    """The cached project folder for `leads` leads (built on first use)."""
    folder = OUT / "memory_1m" / str(leads)
    if (folder / "complete").exists():
        return folder
    generate(leads, folder)
    return folder


def generate(leads: int, folder: Path | str) -> None:
    """`leads` leads and the campaign file in `folder`, written by the campaignctl on sys.path
    (status_1m.py runs it under each checkout it compares)."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "campaigns.toml").write_text(header("Asia/Manila") + TOML)
    from campaignctl.config import load
    from campaignctl.store import Store

    store = Store.for_config(load(folder / "campaigns.toml"))
    secs = import_leads(store, leads, lambda i, rng: ('["buyer"]', f'{{"beds": {i % 5}}}'))
    store.close()
    (folder / "complete").write_text(f"{leads}\n")
    print(f"{leads:,} leads generated in {secs:.1f} s (cached in {folder})")


def measure(
    code: Path, folder: Path, args: list[str], timeout: float
) -> tuple[float, float, int, float]:
    """(peak RSS MiB, seconds, exit code, CPU seconds) of `campaignctl ARGS` run from the
    checkout `code` (its working directory too: `python -m` puts it first on sys.path)."""
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(folder), *args]
    env = {**os.environ, "PYTHONPATH": str(code)}
    with open(os.devnull, "w") as devnull:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=devnull, env=env, cwd=code)
        rss = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = max(rss, peak_mib(proc.pid))
            if time.perf_counter() - t0 > timeout:  # its peak so far, and CPU so far
                proc.kill()
                _pid, _status, usage = os.wait4(proc.pid, 0)
                return rss, time.perf_counter() - t0, -9, usage.ru_utime + usage.ru_stime
            time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return rss, time.perf_counter() - t0, proc.returncode, cpu


def send_copy(folder: Path) -> Path:
    """A fresh copy of the project for one `send` (which writes)."""
    copy = folder.parent / f"{folder.name}-send"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    for name in ("campaigns.toml", "campaignctl.db"):
        shutil.copy(folder / name, copy / name)
    return copy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("leads", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--anchor", type=Path, help="a checkout to pair against (A B A B)")
    ap.add_argument("--runs", type=int, default=1, help="pairs per command (default 1)")
    ap.add_argument("--send", action="store_true", help="also a first `send` (enrols them all)")
    ap.add_argument("--only", action="append", help="only these commands (repeatable)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per command")
    opts = ap.parse_args()
    folder = database(opts.leads)
    commands = dict(COMMANDS)
    if opts.send:
        commands["send"] = ["send"]
    if opts.only:
        commands = {k: v for k, v in commands.items() if k in opts.only}
    codes = {"this": REPO, **({"anchor": opts.anchor.resolve()} if opts.anchor else {})}
    print(f"{opts.leads:,} leads; load: {os.getloadavg()[0]:.2f}; goal <= {GOAL_MIB} MiB")
    worst = 0.0
    for name, args in commands.items():
        figures: dict[str, list[tuple[float, float, int, float]]] = {k: [] for k in codes}
        for _ in range(opts.runs):
            for label, code in codes.items():
                where = send_copy(folder) if name == "send" else folder
                figures[label].append(measure(code, where, args, opts.timeout))
        line = f"{name:<13}"
        for label, runs in figures.items():
            rss = statistics.median(r[0] for r in runs)
            secs = statistics.median(r[1] for r in runs)
            cpu = statistics.median(r[3] for r in runs)
            bad = [r[2] for r in runs if r[2] != 0]
            line += f"  {label}: {rss:7.1f} MiB {secs:6.1f} s (CPU {cpu:5.1f} s)"
            killed = ": killed at --timeout, figures so far" if bad and bad[0] == -9 else ""
            line += f" (exit {bad[0]}{killed})" if bad else ""
            if label == "this":
                worst = max(worst, rss)
        if "anchor" in figures:
            pairs = list(zip(figures["this"], figures["anchor"], strict=True))
            rss_ratio = statistics.median(a[0] / b[0] for a, b in pairs)
            cpus = [a[3] / b[3] for a, b in pairs if b[3] > 0]
            line += f"  ratio RSS {rss_ratio:.2f}"
            line += f", CPU {statistics.median(cpus):.2f}" if cpus else ""
        print(line, flush=True)
    print(f"worst peak {worst:.1f} MiB: {'ok' if worst <= GOAL_MIB else 'MISS'}")
    return 0 if worst <= GOAL_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
