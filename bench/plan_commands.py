"""`plan` as a whole command (issue 15 #3), optionally paired with another checkout:
`python bench/plan_speed.py --commands [LEADS] [--pairs N] [--anchor DIR]`.

For each campaign file (the example limits, then office hours) and each checkout, LEADS leads
(default 100,000) are imported by that checkout's own `leads import`; `plan` then runs on
freshly imported leads (every lead checked against the audience), from the checkout's own
directory, A B A B; wall and CPU seconds (user + system) of the command, medians, and the
median of the pairs' ratios.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import statistics
import sys
from pathlib import Path

from benchlib import OUT, REPO, ZONES, header
from engine_commands import _run

GOAL = 1.5


def _seed(leads: int, label: str, code: Path, toml: str) -> Path:
    folder = OUT / "plan-cmd" / label
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(1)
    with open(folder / "leads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "phone", "first_name", "last_name", "timezone"])
        for i in range(leads):
            phone = f"+1{rng.choice([212, 312, 415, 646])}{200 + i // 10_000:03d}{i % 10_000:04d}"
            w.writerow([f"lead{i}@example.com", phone, f"Name{i}", "Doe", rng.choice(ZONES) or ""])
    (folder / "campaigns.toml").write_text(toml)
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(folder), "leads", "import", "leads.csv"]
    _run(cmd, code)
    return folder


def main(args: list[str]) -> None:
    from plan_speed import CHANNELS, STEPS

    pairs, anchor = 3, None
    if "--pairs" in args:
        at = args.index("--pairs")
        pairs = int(args[at + 1])
        del args[at : at + 2]
    if "--anchor" in args:
        at = args.index("--anchor")
        anchor = Path(args[at + 1]).resolve()
        del args[at : at + 2]
    leads = int(args[0]) if args else 100_000
    codes = {"this": REPO} | ({"anchor": anchor} if anchor else {})
    print(f"plan, {leads:,} fresh leads x 3 steps; load average {os.getloadavg()}; x {pairs}")
    for name, hours in (
        ("example limits", ("", "")),
        ("office hours", ('window = "08:00-18:00"\ndays = "mon-fri"', 'window = "09:00-20:00"')),
    ):
        toml = header("Asia/Manila") + CHANNELS.format(email_hours=hours[0], sms_hours=hours[1])
        seeds = {label: _seed(leads, label, code, toml + STEPS) for label, code in codes.items()}
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in codes}
        for i in range(pairs):
            for label in list(codes) if i % 2 == 0 else list(codes)[::-1]:
                cmd = [sys.executable, "-m", "campaignctl", "-C", str(seeds[label]), "plan"]
                times[label].append(_run(cmd, codes[label]))
        for label in codes:
            wall = statistics.median(t[0] for t in times[label])
            cpu = statistics.median(t[1] for t in times[label])
            print(
                f"{name:14} {label:6}: plan {wall:.2f} s wall, CPU {cpu:.2f} s (medians; "
                f"goal <= {GOAL} s)"
            )
        if anchor:
            for i, what in ((0, "wall"), (1, "CPU")):
                ratio = statistics.median(
                    a[i] / b[i] for a, b in zip(times["this"], times["anchor"], strict=True)
                )
                print(f"{name:14} this/anchor {what}: {ratio:.2f} (median of the pairs' ratios)")
    shutil.rmtree(OUT / "plan-cmd", ignore_errors=True)
