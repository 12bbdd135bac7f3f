"""`send --dry-run` of 10,000 emails against `mailmerge --dry-run --no-limit` (issue 15 #5:
ratio <= 0.5), on the same leads and the same template, as whole commands to /dev/null.

Runs alternate (campaignctl, mailmerge, campaignctl, ...: A B A B) and the figure is the median
of each pair's ratio. With `--anchor DIR` (another checkout, e.g. `git worktree add
/tmp/anchor15 4b975a0`) that checkout's `send --dry-run` runs in each round too. The project
and the CSV are generated under bench/out/dry_run/. Each checkout's modules are compiled ahead
(`compileall`), as an installed package's are.

    python bench/dry_run_bench.py [LEADS] [--runs N] [--anchor DIR] [--floor]

`--floor` times two more commands in each round, on the same project, for where the goal's
floor lies: `campaignctl plan` (deciding what goes, and when, without writing or rendering:
the cheapest whole command that answers what a pass would send) and `campaignctl check --leads
leads.csv` (rendering every lead's message, deciding nothing).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import OUT, REPO, header
from checkouts import byte_compiled

BIN = Path(sys.executable).parent
TOML = """
[channels.email]
provider = "outbox"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Welcome, {{ lead.first_name }}"
body = "Hi {{ lead.first_name }},\\n\\nYour home search in {{ lead.city }} starts here."
"""
MAILMERGE = """TO: {{email}}
SUBJECT: Welcome, {{first_name}}
FROM: Bench <bench@example.com>

Hi {{first_name}},

Your home search in {{city}} starts here.
"""
SERVER = """[smtp_server]
host = localhost
port = 25
security = Never
username = bench
ratelimit = 0
"""
CITIES = ["Makati", "Taguig", "Austin", "Quezon City"]


def setup(leads: int, code: Path = REPO, label: str = "this") -> Path:
    """The project and its LEADS leads, imported by the checkout `code` (each checkout its own
    folder: an older one cannot open a database a newer one has migrated)."""
    folder = OUT / "dry_run" / f"{label}-{leads}"
    if (folder / "complete").exists() and (folder / "complete").read_text() == str(code):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with open(folder / "leads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "first_name", "city"])
        for i in range(leads):
            w.writerow([f"lead{i}@example.com", f"Name{i}", CITIES[i % len(CITIES)]])
    (folder / "campaigns.toml").write_text(header() + TOML)
    (folder / "template.txt").write_text(MAILMERGE)
    (folder / "server.conf").write_text(SERVER)
    subprocess.run(
        [sys.executable, "-m", "campaignctl", "-C", str(folder), "leads", "import", "leads.csv"],
        env={**os.environ, "PYTHONPATH": str(code)},
        stdout=subprocess.DEVNULL,
        check=True,
        cwd=code,
    )
    (folder / "complete").write_text(str(code))
    return folder


def timed(cmd: list[str], code: Path | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one command, from `os.wait4`'s usage of that child."""
    env = {**os.environ, "PYTHONPATH": str(code or REPO)}
    t0 = time.perf_counter()
    # from the checkout itself: `python -m` puts the working directory first on sys.path
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, cwd=code or REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("leads", nargs="?", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--anchor", type=Path, help="another checkout, run in each round too")
    ap.add_argument("--floor", action="store_true", help="also time `plan` and `check --leads`")
    opts = ap.parse_args()
    folder = setup(opts.leads)
    ours = [sys.executable, "-m", "campaignctl", "-C", str(folder), "send", "--dry-run"]
    theirs = [str(BIN / "mailmerge"), "--dry-run", "--no-limit", "--output-format", "text"]
    theirs += ["--template", str(folder / "template.txt"), "--database"]
    theirs += [str(folder / "leads.csv"), "--config", str(folder / "server.conf")]
    anchor = opts.anchor.resolve() if opts.anchor else None
    for code in (REPO, anchor):
        if code is not None:
            byte_compiled(code)
    theirs_folder = setup(opts.leads, anchor, "anchor") if anchor is not None else folder
    anchored = [sys.executable, "-m", "campaignctl", "-C", str(theirs_folder), "send", "--dry-run"]
    print(f"{opts.leads:,} messages; load: {os.getloadavg()[0]:.2f}")
    base = [sys.executable, "-m", "campaignctl", "-C", str(folder)]
    floors = {"campaignctl plan": [*base, "plan"]}
    floors["campaignctl check --leads"] = [*base, "check", "--leads", str(folder / "leads.csv")]
    a, b, c = [], [], []
    floor_runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in floors}
    for _ in range(opts.runs):
        a.append(timed(ours))
        b.append(timed(theirs))
        if anchor is not None:
            c.append(timed(anchored, anchor))
        if opts.floor:
            for label, cmd in floors.items():
                floor_runs[label].append(timed(cmd))

    def line(label: str, runs: list[tuple[float, float, float]], ratio: str = "") -> None:
        wall, cpu = (statistics.median(r[i] for r in runs) for i in (0, 1))
        rss = max(r[2] for r in runs)
        print(f"{label:<31}{wall:6.2f} s wall {cpu:6.2f} s CPU {rss:6.1f} MiB peak{ratio}")

    def ratios(xs: list[tuple[float, float, float]]) -> tuple[float, float]:
        pairs = list(zip(xs, b, strict=True))
        return (
            statistics.median(x[0] / y[0] for x, y in pairs),
            statistics.median(x[1] / y[1] for x, y in pairs),
        )

    print(f"medians of {opts.runs} runs; ratios are medians of the pairs' ratios (wall, CPU)")
    line("mailmerge --dry-run --no-limit", b)
    if anchor is not None:
        wall, cpu = ratios(c)
        line("anchor send --dry-run", c, f"  ratio {wall:.2f} wall {cpu:.2f} CPU")
    if opts.floor:
        for label, runs in floor_runs.items():
            fw, fc = ratios(runs)
            line(label, runs, f"  ratio {fw:.2f} wall {fc:.2f} CPU")
    wall, cpu = ratios(a)
    line("campaignctl send --dry-run", a, f"  ratio {wall:.2f} wall {cpu:.2f} CPU")
    print(f"load at the end: {os.getloadavg()[0]:.2f}")
    print(
        f"ratio (median of pairs, wall)  {wall:6.2f}   {'ok' if wall <= 0.5 else 'MISS'} (<= 0.5)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
