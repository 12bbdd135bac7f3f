"""Engine overhead as whole `campaignctl send` commands (issue 15 #6), optionally paired with
another checkout: `python bench/engine_overhead.py --commands [LEADS] [--pairs N] [--anchor DIR]`.

For each kind (email, SMS) and each checkout, a project with LEADS leads (default 20,000) is
imported once by that checkout's own `leads import` (its own schema); each run copies it to a
fresh folder and times `send` (enrolment, claims, rendering, the outbox files on tmpfs and the
records, synchronous=FULL), from the checkout's own directory (`python -m` puts the working
directory first on sys.path). Runs alternate A B A B; the figure is the median of the pairs'
ratios, with the CPU seconds (user + system of the command) beside the wall time.
"""

from __future__ import annotations

import csv
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import OUT, REPO, header

TOML = """
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
GOALS = {"email": 2000, "sms": 3000}


def _outbox(label: str, kind: str) -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() else OUT
    return base / f"campaignctl-bench-{os.getpid()}-{label}-{kind}"


def _run(cmd: list[str], code: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one command run from checkout `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=code, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _seed(leads: int, label: str, code: Path, kind: str) -> Path:
    """A project with `leads` imported by checkout `code`, nothing sent yet."""
    folder = OUT / "overhead-cmd" / f"{label}-{kind}-{leads}" / "seed"
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    with open(folder / "leads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "phone", "first_name", "last_name"])
        for i in range(leads):
            phone = f"+1415{200 + i // 10_000:03d}{i % 10_000:04d}"
            w.writerow([f"lead{i}@example.com", phone, f"Name{i}", "Doe"])
    toml = header() + TOML.format(kind=kind, outbox=_outbox(label, kind))
    (folder / "campaigns.toml").write_text(toml)
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(folder), "leads", "import", "leads.csv"]
    _run(cmd, code)
    return folder


def _send(seed: Path, label: str, code: Path, kind: str, leads: int) -> tuple[float, float]:
    run = seed.parent / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(seed, run)
    outbox = _outbox(label, kind)
    shutil.rmtree(outbox, ignore_errors=True)
    wall, cpu = _run([sys.executable, "-m", "campaignctl", "-C", str(run), "send"], code)
    files = len(os.listdir(outbox))
    shutil.rmtree(outbox, ignore_errors=True)
    assert files == leads, (label, kind, files)
    return wall, cpu


def main(args: list[str]) -> None:
    pairs, anchor = 3, None
    if "--pairs" in args:
        at = args.index("--pairs")
        pairs = int(args[at + 1])
        del args[at : at + 2]
    if "--anchor" in args:
        at = args.index("--anchor")
        anchor = Path(args[at + 1]).resolve()
        del args[at : at + 2]
    kinds = ["email", "sms"]
    if "--kind" in args:
        at = args.index("--kind")
        kinds = args[at + 1].split(",")
        del args[at : at + 2]
    leads = int(args[0]) if args else 20_000
    codes = {"this": REPO} | ({"anchor": anchor} if anchor else {})
    print(f"{leads:,} messages a command; load average {os.getloadavg()}; A B A B x {pairs}")
    for kind in kinds:
        seeds = {label: _seed(leads, label, code, kind) for label, code in codes.items()}
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in codes}
        for i in range(pairs):
            order = list(codes) if i % 2 == 0 else list(codes)[::-1]
            for label in order:
                times[label].append(_send(seeds[label], label, codes[label], kind, leads))
        for label in codes:
            walls = [t[0] for t in times[label]]
            cpus = [t[1] for t in times[label]]
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            print(
                f"{kind:5} {label:6}: send {wall:6.2f} s wall (median; runs "
                f"{', '.join(f'{w:.2f}' for w in walls)}) = {leads / wall:,.0f} msg/s; "
                f"CPU {cpu:.2f} s = {leads / cpu:,.0f} msg/CPU-s (goal >= {GOALS[kind]:,} msg/s)"
            )
        if anchor:
            for i, what in ((0, "wall"), (1, "CPU")):
                ratio = statistics.median(
                    a[i] / b[i] for a, b in zip(times["this"], times["anchor"], strict=True)
                )
                print(f"{kind:5} this/anchor {what}: {ratio:.2f} (median of the pairs' ratios)")
        shutil.rmtree(OUT / "overhead-cmd", ignore_errors=True)
