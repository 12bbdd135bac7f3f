"""`plan` at 1,000,000 leads, with and without office hours (issue 15 #3: <= 10 s; #1: <= 150
MiB): whole commands, peak RSS and CPU, optionally paired with another checkout.

The leads are bench/memory_1m.py's cached database (generated on first use under
bench/out/memory_1m/, each checkout's by itself); each campaign file (plan_speed.py's: the
example limits, then office hours on both channels) gets a folder beside it whose database is
a link to that one (`plan` only reads). With `--anchor DIR` each command runs there too, A B A B.

    python bench/plan_1m.py [LEADS] [--anchor DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

from benchlib import REPO, header
from memory_1m import GOAL_MIB, database_for, measure
from plan_speed import CHANNELS, STEPS

GOAL_SECONDS = 10.0
HOURS = {
    "example limits": ("", ""),
    "office hours": ('window = "08:00-18:00"\ndays = "mon-fri"', 'window = "09:00-20:00"'),
}


def project(source: Path, name: str, hours: tuple[str, str]) -> Path:
    """A folder reading `source`'s database with plan_speed's campaign file and these hours."""
    folder = source.parent / f"{source.name}-plan-{name.replace(' ', '-')}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    toml = header("Asia/Manila") + CHANNELS.format(email_hours=hours[0], sms_hours=hours[1])
    (folder / "campaigns.toml").write_text(toml + STEPS)
    (folder / "campaignctl.db").symlink_to(source / "campaignctl.db")
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("leads", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--anchor", type=Path, help="a checkout to pair against (A B A B)")
    ap.add_argument("--runs", type=int, default=1, help="pairs per campaign file (default 1)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per command")
    opts = ap.parse_args()
    codes = {"this": REPO, **({"anchor": opts.anchor.resolve()} if opts.anchor else {})}
    # each checkout reads leads it generated (an older one cannot open a newer one's database)
    sources = {label: database_for(code, label, opts.leads) for label, code in codes.items()}
    print(f"plan, {opts.leads:,} leads; load: {os.getloadavg()[0]:.2f}; x {opts.runs}")
    ok = True
    for name, hours in HOURS.items():
        folders = {label: project(sources[label], name, hours) for label in codes}
        figures: dict[str, list[tuple[float, float, int, float]]] = {k: [] for k in codes}
        for i in range(opts.runs):
            for label in list(codes) if i % 2 == 0 else list(codes)[::-1]:
                figures[label].append(measure(codes[label], folders[label], ["plan"], opts.timeout))
        line = f"{name:<15}"
        for label, runs in figures.items():
            rss = statistics.median(r[0] for r in runs)
            secs = statistics.median(r[1] for r in runs)
            cpu = statistics.median(r[3] for r in runs)
            bad = [r[2] for r in runs if r[2] != 0]
            line += f"  {label}: {secs:5.2f} s (CPU {cpu:5.2f} s) {rss:6.1f} MiB"
            line += f" (exit {bad[0]})" if bad else ""
            if label == "this":
                ok = ok and not bad and secs <= GOAL_SECONDS and rss <= GOAL_MIB
        if "anchor" in figures:
            pairs = list(zip(figures["this"], figures["anchor"], strict=True))
            cpu_ratio = statistics.median(a[3] / b[3] for a, b in pairs)
            rss_ratio = statistics.median(a[0] / b[0] for a, b in pairs)
            line += f"  this/anchor CPU {cpu_ratio:.2f}, RSS {rss_ratio:.2f}"
        print(line, flush=True)
        for folder in folders.values():
            shutil.rmtree(folder)
    print(f"goal <= {GOAL_SECONDS:.0f} s and <= {GOAL_MIB} MiB: {'ok' if ok else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
