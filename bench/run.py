"""Run every benchmark, one after the other, and print their figures.

    python bench/run.py                full sizes (as quoted in the docs; the import takes minutes)
    python bench/run.py --quick        small sizes, for a smoke run
    python bench/run.py NAME ...       only these (e.g. `import_bench enrol_bench`)

Needs the `bench` extra (`pip install -e '.[test,bench]'`: sqlite-utils and mailmerge, the
yardsticks). Everything a benchmark reads is in the repository (the import's CSV comes from
bench/gen_leads.py); what it writes goes to bench/out/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# script, full-size argument, quick argument
BENCHMARKS = [
    ("startup_bench.py", "21", "5"),
    ("engine_overhead.py", "20000", "2000"),
    ("plan_speed.py", "100000", "10000"),
    ("plan_1m.py", "1000000", "20000"),
    ("pacing_rate.py", "60", "5"),
    ("import_bench.py", "1000000", "20000"),
    ("enrol_bench.py", "1000000", "20000"),
    ("pg_import.py", "1000000", "20000"),
    ("pg_daemons.py", "20000", "2000"),
    ("explain_bench.py", "1000000", "20000"),
    ("messages_list.py", "1000000", "20000"),
    ("suppression_cost.py", "20000", "2000"),
    ("update_bench.py", "100000", "5000"),
    ("attachment_size.py", "18", "2"),
    ("trigger_bench.py", "1000000", "20000"),
    ("tracking_cost.py", "5000", "500"),
    ("serve_load.py", "60", "5"),
    ("report_bench.py", "1000000", "20000"),
    ("memory_1m.py", "1000000", "20000"),
    ("status_1m.py", "1000000", "20000"),
    ("dry_run_bench.py", "10000", "1000"),
    ("pass_memory.py", "100000", "5000"),
    ("unsubscribe_bench.py", "60", "5"),
]


def main(argv: list[str] | None = None) -> int:
    names = [script.removesuffix(".py") for script, _, _ in BENCHMARKS]
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description=__doc__.split("\n\n")[0],
        epilog="benchmarks: " + ", ".join(names),
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("only", nargs="*", metavar="NAME", help="run only these benchmarks")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only if n.removesuffix(".py") not in names]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; expected one of: {', '.join(names)}")
    wanted = {n.removesuffix(".py") for n in args.only}
    failed = []
    for script, full, small in BENCHMARKS:
        if wanted and script.removesuffix(".py") not in wanted:
            continue
        arg = small if args.quick else full
        print(f"\n=== {script} {arg}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script), arg], cwd=HERE.parent)
        if rc:
            failed.append(f"{script} (exit {rc})")
    if failed:
        print("\nfailed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
