"""Pacing: `send` with per_second = 10 for 60 s of real time; the achieved rate must be 10/s +-2%.

Runs the real command (`campaignctl send --max-time 60s`) through the outbox channel and
measures the rate from the files' modification times (when each message really left), not from
the times the database records.

    /work/venv/bin/python bench/pacing_rate.py [SECONDS]
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time

from benchlib import REPO, bulk_leads, fresh_project, header

RATE = 10


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    toml = (
        header()
        + f"""
[channels.sms]
provider = "outbox"
kind = "sms"
per_second = {RATE}

[campaigns.paced]
status = "active"
[[campaigns.paced.steps]]
channel = "sms"
body = "Hi {{{{ lead.first_name }}}}"
"""
    )
    cfg, store = fresh_project("pacing", toml)
    bulk_leads(store, RATE * seconds * 2)
    store.close()
    started = time.time()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "campaignctl",
            "-C",
            str(cfg.base_dir),
            "send",
            "--quiet",
            "--max-time",
            f"{seconds}s",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - started
    stamps = sorted(p.stat().st_mtime for p in (cfg.base_dir / "outbox").glob("*.json"))
    n = len(stamps)
    span = stamps[-1] - stamps[0]
    rate = (n - 1) / span
    print(done.stdout.strip() or done.stderr.strip())
    print(
        f"per_second = {RATE}: {n} messages, first to last {span:.2f} s, achieved {rate:.3f}/s "
        f"({(rate / RATE - 1) * 100:+.2f}% off target); "
        f"command ran {wall:.1f} s, exit {done.returncode}"
    )
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    print(f"gaps between sends: min {min(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
