"""Benchmark `campaignctl leads import` against `sqlite-utils insert --csv` on generated leads.

    /work/venv/bin/python bench/import_bench.py [ROWS]      (default 1,000,000)

The CSV comes from ../shared/bench/gen_leads.py (seeded) and is cached in bench/out/. Both tools
run as subprocesses in the same run, on the same file, into fresh databases; wall time and peak
RSS (from wait4, so it covers the process and the workers it waited for) are measured for each.
The counts campaignctl reports are checked against the generator's summary line.
Goals (issue 2): <= 30 s for 1M rows, <= 0.6x sqlite-utils, <= 64 MiB per process.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
# ../shared beside the checkout (or beside its folder of worktrees)
GEN = (
    next(
        (p for p in (REPO.parent / "shared", REPO.parent.parent / "shared") if p.is_dir()),
        REPO.parent / "shared",
    )
    / "bench"
    / "gen_leads.py"
)
BIN = Path(sys.executable).parent


def generate(rows: int) -> tuple[Path, dict[str, int]]:
    """The cached CSV for `rows` rows and the generator's summary (`planted_duplicates` ...)."""
    csv_path = OUT / f"leads-{rows}.csv"
    summary_path = OUT / f"leads-{rows}.summary"
    if not (csv_path.exists() and summary_path.exists()):
        OUT.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, str(GEN), str(rows), str(csv_path)],
            check=True,
            capture_output=True,
            text=True,
        )
        summary_path.write_text(done.stderr.strip().splitlines()[-1] + "\n")
    summary = summary_path.read_text()
    return csv_path, {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", summary)}


class Tree:
    """Polls /proc for every process in a session: peak RSS (VmHWM) and CPU time per pid.

    wait4 only sees a process and the children it reaps; import workers are children of
    multiprocessing's forkserver, so they are found here instead (no psutil needed).
    """

    def __init__(self, session: int) -> None:
        self.session = session
        self.seen: dict[int, tuple[str, float, float]] = {}  # pid -> (name, MiB, CPU s)
        self.tick = os.sysconf("SC_CLK_TCK")

    def poll(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) != self.session:  # field 6 of stat: session id
                continue
            hwm = re.search(r"VmHWM:\s+(\d+)", status)
            cpu = (int(fields[11]) + int(fields[12])) / self.tick
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()[:60]
            self.seen[int(entry.name)] = (cmd, int(hwm.group(1)) / 1024 if hwm else 0.0, cpu)


def run_measured(cmd: list[str], **kw) -> tuple[float, float, float, str]:
    """(wall s, largest peak RSS of any one process in MiB, CPU s of all of them, stdout)."""
    out_path, err_path = OUT / "stdout.txt", OUT / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True, **kw)
        tree = Tree(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            tree.poll()
            time.sleep(0.1)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err_path.read_text()}")
    tree.seen.pop(proc.pid, None)  # wait4 has the exact figures for the process itself
    rss, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    print(f"  {Path(cmd[0]).name} {' '.join(cmd[1:4])}...: peak {rss:.1f} MiB, {cpu:.1f} CPU s")
    for name, child_rss, child_cpu in tree.seen.values():
        print(f"    child {name!r}: peak {child_rss:.1f} MiB, {child_cpu:.1f} CPU s")
        rss, cpu = max(rss, child_rss), cpu + child_cpu
    return wall, rss, cpu, out_path.read_text()


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    csv_path, summary = generate(rows)
    project = OUT / f"project-{rows}"
    project.mkdir(parents=True, exist_ok=True)
    # The generator mixes US and PH numbers; national US formats need the US region.
    (project / "campaigns.toml").write_text(
        '[settings]\ndatabase = "bench.db"\ndefault_region = "US"\n'
    )
    su_db = OUT / f"sqlite-utils-{rows}.db"
    for stale in [*project.glob("bench.db*"), *OUT.glob(f"sqlite-utils-{rows}.db*")]:
        stale.unlink()

    print(
        f"rows={rows:,} file={csv_path.stat().st_size / 2**20:.0f} MiB cpus={os.cpu_count()} "
        f"load average={' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # campaignctl runs as `python -m campaignctl` from this worktree (PYTHONPATH), not installed.
    cc_wall, cc_rss, cc_cpu, cc_out = run_measured(
        [sys.executable, "-m", "campaignctl", "-C", str(project), "leads", "import", str(csv_path)],
        env=env,
    )
    su_wall, su_rss, su_cpu, _ = run_measured(
        [str(BIN / "sqlite-utils"), "insert", str(su_db), "leads", str(csv_path), "--csv"]
    )

    numbers = next(
        [int(n.replace(",", "")) for n in re.findall(r"[\d,]+", line)]
        for line in cc_out.splitlines()
        if line.count("│") >= 5 and re.search(r"\d", line)
    )
    read, inserted, duplicates, dropped, rejected = numbers
    in_db = count(project / "bench.db", "lead")
    checks = {
        "read == rows": read == rows,
        "duplicates == planted_duplicates": duplicates == summary["planted_duplicates"],
        "inserted + rejected == rows - planted_duplicates": inserted + rejected
        == rows - summary["planted_duplicates"],
        "rejected <= bad_email (rows whose only contact is bad)": rejected <= summary["bad_email"],
        "leads in database == inserted": in_db == inserted,
        "sqlite-utils rows == rows": count(su_db, "leads") == rows,
    }
    print(f"generator: {' '.join(f'{k}={v}' for k, v in summary.items())}")
    print(
        f"campaignctl: read={read} inserted={inserted} duplicates={duplicates} "
        f"fields_dropped={dropped} rejected={rejected}"
    )
    print()
    print(f"{'tool':<28}{'seconds':>10}{'CPU seconds':>13}{'peak RSS MiB':>14}")
    print(f"{'campaignctl leads import':<28}{cc_wall:>10.1f}{cc_cpu:>13.1f}{cc_rss:>14.1f}")
    print(f"{'sqlite-utils insert --csv':<28}{su_wall:>10.1f}{su_cpu:>13.1f}{su_rss:>14.1f}")
    ratio = cc_wall / su_wall
    print(f"{'ratio':<28}{ratio:>10.2f}")
    print()
    goals = {
        f"<= 30 s for 1M rows (scaled: {cc_wall * 1_000_000 / rows:.1f} s)": cc_wall
        * 1_000_000
        / rows
        <= 30,
        "<= 0.6x sqlite-utils": ratio <= 0.6,
        "<= 64 MiB peak RSS": cc_rss <= 64,
    }
    for name, ok in {**checks, **goals}.items():
        print(f"{'ok  ' if ok else 'MISS'} {name}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
