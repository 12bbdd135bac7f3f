"""Benchmark `campaignctl leads import` on PostgreSQL (COPY) against the SQLite import.

    python bench/pg_import.py [ROWS]      (default 1,000,000)

The CSV is import_bench.py's (bench/gen_leads.py, seeded, cached in bench/out/). A
throwaway PostgreSQL cluster is started for the run with the tests' support code
(tests/support/postgres.py: Debian's server, a temporary folder, 127.0.0.1, fsync off as in
the tests, removed at the end), then the same file is imported into a fresh SQLite file and a
fresh PostgreSQL database, each by `python -m campaignctl` in a subprocess. Wall time, the
client's CPU and peak RSS (with its workers) are measured for each, and the PostgreSQL
server's CPU (its processes under /proc) for the PostgreSQL run. The counts must agree.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.import_bench import OUT, generate, run_measured  # noqa: E402
from tests.support.postgres import Cluster  # noqa: E402


def server_cpu(cluster: Cluster) -> float:
    """CPU seconds used so far by the cluster's processes (postmaster and backends)."""
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(entry.name) == pid or int(fields[1]) == pid:  # field 4: parent pid
            # utime, stime, and the children's (backends that ended) for the postmaster
            total += sum(int(f) for f in fields[11:15]) / tick
    return total


def summary_numbers(out: str) -> list[int]:
    return next(
        [int(n.replace(",", "")) for n in re.findall(r"[\d,]+", line)]
        for line in out.splitlines()
        if line.count("│") >= 5 and re.search(r"\d", line)
    )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    csv_path, summary = generate(rows)
    project = OUT / f"pg-project-{rows}"
    project.mkdir(parents=True, exist_ok=True)
    (project / "campaigns.toml").write_text(
        '[settings]\ndatabase = "bench.db"\ndefault_region = "US"\n'
    )
    for stale in project.glob("bench.db*"):
        stale.unlink()
    print(
        f"rows={rows:,} file={csv_path.stat().st_size / 2**20:.0f} MiB cpus={os.cpu_count()} "
        f"load average={' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    base = {**os.environ, "PYTHONPATH": str(REPO)}
    base.pop("CAMPAIGNCTL_DATABASE", None)
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(project), "leads", "import"]
    print("SQLite:")
    sq_wall, sq_rss, sq_cpu, sq_out = run_measured([*cmd, str(csv_path)], env=base)
    with Cluster(prefix="campaignctl-bench-pg-") as cluster:
        url = cluster.create_database("bench")
        print(f"PostgreSQL ({cluster.bin}):")
        before = server_cpu(cluster)
        pg_wall, pg_rss, pg_cpu, pg_out = run_measured(
            [*cmd, str(csv_path)], env={**base, "CAMPAIGNCTL_DATABASE": url}
        )
        pg_server = server_cpu(cluster) - before
        in_pg = int(cluster.execute("SELECT count(*) FROM lead", "bench")[0][0])
        size = int(cluster.execute("SELECT pg_database_size('bench')", "bench")[0][0])
    with sqlite3.connect(project / "bench.db") as conn:
        in_sqlite = int(conn.execute("SELECT count(*) FROM lead").fetchone()[0])

    sq, pg = summary_numbers(sq_out), summary_numbers(pg_out)
    print(f"generator: {' '.join(f'{k}={v}' for k, v in summary.items())}")
    print(f"SQLite     read, inserted, duplicates, dropped, rejected = {sq}")
    print(f"PostgreSQL read, inserted, duplicates, dropped, rejected = {pg}")
    print()
    head = f"{'seconds':>10}{'client CPU s':>14}{'server CPU s':>14}{'peak RSS MiB':>14}"
    print(f"{'import into':<24}{head}")
    print(f"{'SQLite (sqlite3)':<24}{sq_wall:>10.1f}{sq_cpu:>14.1f}{'-':>14}{sq_rss:>14.1f}")
    print(
        f"{'PostgreSQL (COPY)':<24}{pg_wall:>10.1f}{pg_cpu:>14.1f}{pg_server:>14.1f}{pg_rss:>14.1f}"
    )
    print(f"{'ratio PostgreSQL/SQLite':<24}{pg_wall / sq_wall:>10.2f}")
    print(f"PostgreSQL database size: {size / 2**20:.0f} MiB")
    checks = {
        "same report on both": sq == pg,
        "leads in SQLite == inserted": in_sqlite == sq[1],
        "leads in PostgreSQL == inserted": in_pg == pg[1],
        "duplicates == planted_duplicates": pg[2] == summary["planted_duplicates"],
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {name}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
