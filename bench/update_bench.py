"""`leads import --update` of a file over the leads it imported, against a fresh import of it.

    /work/venv/bin/python bench/update_bench.py [ROWS]      (default 100,000)

The CSV is import_bench's (bench/gen_leads.py, seeded, cached in bench/out/). In one
run, as subprocesses like import_bench: (1) a fresh import of the file into an empty database;
(2) `--update` of the same file over those leads (every row names a stored lead and changes
nothing); (3) `--update` of the same rows with one more column (`score`), so every lead is
updated and journaled. Wall time, CPU seconds and the largest peak RSS of any one process are
printed for each. Goal (issue 11): (2) <= 1.5x (1).
"""

from __future__ import annotations

import csv
import os
import re
import sys
from pathlib import Path

from import_bench import OUT, count, generate, run_measured

REPO = Path(__file__).resolve().parent.parent


def with_score(src: Path) -> Path:
    """The same file with a `score` column, a different value on every row (cached)."""
    dst = src.with_name(src.stem + "-score.csv")
    if not dst.exists():
        with open(src, newline="", encoding="utf-8") as fin:
            rows = csv.reader(fin)
            with open(dst, "w", newline="", encoding="utf-8") as fout:
                out = csv.writer(fout)
                out.writerow([*next(rows), "score"])
                for i, row in enumerate(rows):
                    out.writerow([*row, str(i % 97)])
    return dst


def counts(stdout: str) -> list[int]:
    """The numbers of the summary table's row."""
    return next(
        [int(n.replace(",", "")) for n in re.findall(r"[\d,]+", line)]
        for line in stdout.splitlines()
        if line.count("│") >= 5 and re.search(r"\d", line)
    )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    csv_path, _summary = generate(rows)
    scored = with_score(csv_path)
    project = OUT / f"update-{rows}"
    project.mkdir(parents=True, exist_ok=True)
    (project / "campaigns.toml").write_text(
        '[settings]\ndatabase = "bench.db"\ndefault_region = "US"\n'
    )
    for stale in project.glob("bench.db*"):
        stale.unlink()
    print(
        f"rows={rows:,} cpus={os.cpu_count()} "
        f"load average={' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "campaignctl", "-C", str(project), "leads", "import"]
    results = {}
    for name, args in (
        ("fresh import", [str(csv_path)]),
        ("--update, same file", [str(csv_path), "--update"]),
        ("--update, +1 column", [str(scored), "--update"]),
    ):
        wall, rss, cpu, out = run_measured([*base, *args], env=env)
        results[name] = (wall, cpu, rss, counts(out))
        print(f"  {name}: counts {counts(out)}")
    journal = count(project / "bench.db", "journal")
    print()
    print(f"{'run':<24}{'seconds':>10}{'CPU seconds':>13}{'peak RSS MiB':>14}{'x fresh':>9}")
    fresh = results["fresh import"][0]
    for name, (wall, cpu, rss, _n) in results.items():
        print(f"{name:<24}{wall:>10.1f}{cpu:>13.1f}{rss:>14.1f}{wall / fresh:>9.2f}")
    print(f"journal rows: {journal:,}")
    same = results["--update, same file"]
    ok = same[0] <= 1.5 * fresh
    print(f"{'ok  ' if ok else 'MISS'} --update of the same file <= 1.5x a fresh import")
    fresh_counts = results["fresh import"][3]  # read, inserted, duplicates, dropped, rejected
    # read, inserted, updated, unchanged, duplicates, dropped, rejected
    same_counts, column_counts = same[3], results["--update, +1 column"][3]
    checks = {
        "same file: every lead found again, unchanged": same_counts[1:4] == [0, 0, fresh_counts[1]],
        "same file: the file's own duplicates stay duplicates": same_counts[4] == fresh_counts[2],
        "+1 column: every lead updated": column_counts[2] == fresh_counts[1],
    }
    for name, good in checks.items():
        print(f"{'ok  ' if good else 'FAIL'} {name}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
