"""Run every benchmark, one after the other, and print their figures.

    python bench/run.py            full sizes (as quoted in the docs; the import takes minutes)
    python bench/run.py --quick    small sizes, for a smoke run

Needs the `bench` extra (`pip install -e '.[test,bench]'`: sqlite-utils and mailmerge, the
yardsticks) and, for the import benchmark, ../shared/bench/gen_leads.py beside the checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# script, full-size argument, quick argument
BENCHMARKS = [
    ("startup_bench.py", "21", "5"),
    ("engine_overhead.py", "20000", "2000"),
    ("plan_speed.py", "100000", "10000"),
    ("pacing_rate.py", "60", "5"),
    ("import_bench.py", "1000000", "20000"),
    ("pg_import.py", "1000000", "20000"),
    ("pg_daemons.py", "20000", "2000"),
    ("explain_bench.py", "1000000", "20000"),
    ("messages_list.py", "1000000", "20000"),
    ("suppression_cost.py", "20000", "2000"),
    ("update_bench.py", "100000", "5000"),
    ("attachment_size.py", "18", "2"),
    ("trigger_bench.py", "1000000", "20000"),
]


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    failed = []
    for script, full, small in BENCHMARKS:
        arg = small if quick else full
        print(f"\n=== {script} {arg}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script), arg], cwd=HERE.parent)
        if rc:
            failed.append(f"{script} (exit {rc})")
    if failed:
        print("\nfailed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
