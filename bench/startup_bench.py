"""Start-up time: `campaignctl --help` against `mailmerge --help`, median of N runs each.

    /work/venv/bin/python bench/startup_bench.py [N]      (default 21)

campaignctl runs as `python -m campaignctl` with PYTHONPATH set to this worktree (it is not
installed in the venv); mailmerge runs from its console script. Runs alternate, so both see
the same machine load. Goal (issue 2): campaignctl <= 1.1x mailmerge.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def once(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ours = [sys.executable, "-m", "campaignctl", "--help"]
    theirs = [str(BIN / "mailmerge"), "--help"]
    once(ours, env), once(theirs, env)  # warm the file cache
    times: dict[str, list[float]] = {"campaignctl --help": [], "mailmerge --help": []}
    for _ in range(runs):
        times["campaignctl --help"].append(once(ours, env))
        times["mailmerge --help"].append(once(theirs, env))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, median in medians.items():
        print(f"{name:<22}{median * 1000:>8.0f} ms  (median of {runs})")
    ratio = medians["campaignctl --help"] / medians["mailmerge --help"]
    print(f"{'ratio':<22}{ratio:>8.2f}   {'ok' if ratio <= 1.1 else 'MISS'} (goal <= 1.1)")


if __name__ == "__main__":
    main()
