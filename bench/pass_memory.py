"""Peak RSS of a pass that sends everything at once, as the number of messages grows (issue 15
#1: memory flat in the number of leads): `send --dry-run`, `send --dry-run --show all` and a
real `send` through the outbox, with no limits, so that one pass has every message.

At LEADS and at a fifth of it (default 100,000 and 20,000 emails, dry_run_bench.py's project:
one step, no limits), each command runs as a whole process from this checkout and, with
`--anchor DIR`, from that checkout too (its own project folder: an older checkout cannot open
a newer database).
Peak RSS is the child's ru_maxrss; `send` runs on a fresh copy of the project each time (it
writes), its outbox files included in the copy. The figure to read is how each command's peak
grows from the smaller size to the larger.

    python bench/pass_memory.py [LEADS] [--anchor DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from benchlib import REPO
from checkouts import byte_compiled
from dry_run_bench import setup, timed

COMMANDS = {
    "send --dry-run": ["send", "--dry-run"],
    "send --dry-run --show all": ["send", "--dry-run", "--show", "all"],
    "send": ["send", "--quiet"],
}


def run(code: Path, folder: Path, args: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MiB) of `campaignctl ARGS` on the project `folder` (a copy of it
    when the command writes)."""
    target = folder
    if "--dry-run" not in args:
        target = folder.parent / f"{folder.name}-send"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for name in ("campaigns.toml", "campaignctl.db"):
            shutil.copy(folder / name, target / name)
    try:
        return timed([sys.executable, "-m", "campaignctl", "-C", str(target), *args], code)
    finally:
        if target != folder:
            shutil.rmtree(target, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("leads", nargs="?", type=int, default=100_000)
    ap.add_argument("--anchor", type=Path, help="another checkout, run beside this one")
    opts = ap.parse_args()
    codes = {"this": REPO}
    if opts.anchor is not None:
        codes["anchor"] = opts.anchor.resolve()
    for code in codes.values():
        byte_compiled(code)
    sizes = [opts.leads // 5, opts.leads]
    print(f"load: {os.getloadavg()[0]:.2f}")
    peaks: dict[tuple[str, str], list[float]] = {}
    for size in sizes:
        folders = {label: setup(size, code, label) for label, code in codes.items()}
        for name, args in COMMANDS.items():
            for label, code in codes.items():
                wall, cpu, peak = run(code, folders[label], args)
                peaks.setdefault((name, label), []).append(peak)
                print(
                    f"{size:>9,} {name:<27} {label:<6} {wall:7.2f} s wall {cpu:7.2f} s CPU "
                    f"{peak:7.1f} MiB peak",
                    flush=True,
                )
    print(f"peak growth from {sizes[0]:,} to {sizes[1]:,} messages:")
    for (name, label), (small, large) in peaks.items():
        print(f"  {name:<27} {label:<6} {small:7.1f} -> {large:7.1f} MiB ({large - small:+.1f})")
    print(f"load at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
