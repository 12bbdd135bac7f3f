"""`status` at 1,000,000 leads, every one enrolled with a message pending (issue 15 #4: <= 1 s).

The leads are memory_1m.py's, each checkout's made by that checkout (`database_for`: an older
checkout cannot open a database a newer one has migrated); each then runs one `send --limit
100` on a copy (bench/out/status_1m/LABEL-LEADS/), which enrols every lead in the welcome
sequence and sends 100. `status` then runs as a whole command from each checkout, A B A B,
and each figure is the median of the runs; the ratio is the median of the pairs' ratios. Peak
RSS is the process's VmHWM, polled from /proc.

    python bench/status_1m.py [LEADS] [--anchor DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

from benchlib import OUT, REPO
from checkouts import byte_compiled
from memory_1m import database_for, measure

GOAL_SECONDS = 1.0


def enrolled(code: Path, label: str, leads: int) -> Path:
    """A copy of the leads `code` generated, after its own first `send` pass (cached)."""
    folder = OUT / "status_1m" / f"{label}-{leads}"
    done = folder / "complete"
    if done.exists() and done.read_text() == str(code):
        return folder
    base = database_for(code, label, leads)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in ("campaigns.toml", "campaignctl.db"):
        shutil.copy(base / name, folder / name)
    rss, secs, code_, _ = measure(code, folder, ["send", "--limit", "100"], 1800)
    if code_ != 0:
        raise SystemExit(f"{label}: send exited {code_}")
    print(f"{label}: first send over {leads:,} leads in {secs:.1f} s, peak {rss:.0f} MiB")
    done.write_text(str(code))
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("leads", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--anchor", type=Path, help="a checkout to pair against (A B A B)")
    ap.add_argument("--runs", type=int, default=5, help="runs per checkout (default 5)")
    opts = ap.parse_args()
    codes = {"this": REPO, **({"anchor": opts.anchor.resolve()} if opts.anchor else {})}
    for code in codes.values():
        byte_compiled(code)
    folders = {label: enrolled(code, label, opts.leads) for label, code in codes.items()}
    print(
        f"{opts.leads:,} leads enrolled; load: {os.getloadavg()[0]:.2f}; goal <= {GOAL_SECONDS} s"
    )
    runs: dict[str, list[tuple[float, float, int, float]]] = {k: [] for k in codes}
    for label, code in codes.items():  # warm the file cache
        measure(code, folders[label], ["status"], 600)
    for _ in range(opts.runs):
        for label, code in codes.items():
            runs[label].append(measure(code, folders[label], ["status"], 600))
    for label, figures in runs.items():
        bad = [r[2] for r in figures if r[2] != 0]
        print(
            f"status {label:<7} {statistics.median(r[1] for r in figures):6.2f} s "
            f"(CPU {statistics.median(r[3] for r in figures):5.2f} s), "
            f"peak {statistics.median(r[0] for r in figures):6.1f} MiB"
            + (f" (exit {bad[0]})" if bad else "")
        )
    if "anchor" in runs:
        pairs = list(zip(runs["this"], runs["anchor"], strict=True))
        print(
            f"ratio this/anchor: wall {statistics.median(a[1] / b[1] for a, b in pairs):.2f}, "
            f"CPU {statistics.median(a[3] / b[3] for a, b in pairs):.2f}"
        )
    this = statistics.median(r[1] for r in runs["this"])
    print(f"{'ok' if this <= GOAL_SECONDS else 'MISS'}: {this:.2f} s (goal <= {GOAL_SECONDS} s)")
    return 0 if this <= GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
