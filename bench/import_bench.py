"""Benchmark `campaignctl leads import` against `sqlite-utils insert --csv` on generated leads.

    python bench/import_bench.py [ROWS] [--pairs N] [--anchor DIR]     (1,000,000 rows, 3 pairs)

The CSV comes from bench/gen_leads.py (seeded) and is cached in bench/out/. The tools run as
subprocesses, on the same file, into fresh databases, interleaved (campaignctl, sqlite-utils,
campaignctl, sqlite-utils ...: A B A B), and each figure is the median of the pairs' ratios,
so that the machine's load, which moves between runs, moves both sides of a pair alike.
`--anchor DIR` adds a third tool to each pair: campaignctl from another checkout (its own
.venv if it has one, else this one's), e.g. `git worktree add /tmp/anchor COMMIT` for a
before/after. Wall time, CPU seconds (every process of the command: wait4 for it, /proc for
the forkserver's children) and the largest peak RSS of any one process are measured;
campaignctl's counts are checked against the generator's summary line.
Goals (issues 2 and 15): <= 30 s for 1M rows, <= 0.6x sqlite-utils' wall time, CPU per row
below sqlite-utils', <= 64 MiB per process.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
GEN = REPO / "bench" / "gen_leads.py"
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


def _become_subreaper() -> None:
    """Adopt the orphans of the commands run here (Linux `PR_SET_CHILD_SUBREAPER`).

    A process a command leaves running (a forkserver that exits after it) is then re-parented
    to this process instead of init, and reaped here: so `RUSAGE_CHILDREN` counts the CPU time
    of every process of the command, whichever of them reaped which, and none twice."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: list[str], **kw) -> tuple[float, float, float, str]:
    """(wall s, largest peak RSS of any one process in MiB, CPU s of all of them, stdout).

    Also prints how many of the command's processes were still running when it exited."""
    out_path, err_path = OUT / "stdout.txt", OUT / "stderr.txt"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    left = Tree(proc.pid)
    left.poll()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # reap what it left (re-parented here), once it exits
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.05)
        except ChildProcessError:
            break
    cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - _cpu(before)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err_path.read_text()}")
    own = tree.seen.pop(proc.pid, None)
    rss = usage.ru_maxrss / 1024  # the command's process, or a descendant it reaped
    alone = f" (its own VmHWM, last seen: {own[1]:.1f} MiB)" if own else ""
    print(f"  {Path(cmd[0]).name} {' '.join(cmd[1:4])}...: peak {rss:.1f} MiB{alone}")
    for name, child_rss, child_cpu in tree.seen.values():
        print(f"    child {name!r}: peak {child_rss:.1f} MiB, CPU {child_cpu:.1f} s (last seen)")
        rss = max(rss, child_rss)
    print(f"    CPU {cpu:.1f} s (every process); still running at its exit: {len(left.seen)}")
    return wall, rss, cpu, out_path.read_text()


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def parse_report(out: str) -> list[int]:
    """read, inserted, duplicates, fields dropped, rejected: the report table's numbers."""
    return next(
        [int(n.replace(",", "")) for n in re.findall(r"[\d,]+", line)]
        for line in out.splitlines()
        if line.count("│") >= 5 and re.search(r"\d", line)
    )


def campaignctl_run(python: str, tree: Path, project: Path, csv_path: Path) -> Figures:
    """One `leads import` into a fresh database: (wall, peak, CPU, report numbers)."""
    for stale in project.glob("bench.db*"):
        stale.unlink()
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "120"}
    cmd = [python, "-m", "campaignctl", "-C", str(project), "leads", "import", str(csv_path)]
    # from the checkout itself: `python -m` puts the working directory first on sys.path
    wall, rss, cpu, out = run_measured(cmd, env=env, cwd=tree)
    return Figures(wall, rss, cpu, parse_report(out), count(project / "bench.db", "lead"))


def sqlite_utils_run(db: Path, csv_path: Path) -> Figures:
    for stale in db.parent.glob(db.name + "*"):
        stale.unlink()
    cmd = [str(BIN / "sqlite-utils"), "insert", str(db), "leads", str(csv_path), "--csv"]
    wall, rss, cpu, _ = run_measured(cmd)
    return Figures(wall, rss, cpu, [], count(db, "leads"))


class Figures:
    def __init__(self, wall: float, rss: float, cpu: float, report: list[int], rows: int):
        self.wall, self.rss, self.cpu, self.report, self.rows = wall, rss, cpu, report, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=3, help="interleaved runs of each tool")
    ap.add_argument("--anchor", type=Path, help="another checkout to run as well (its .venv)")
    a = ap.parse_args()
    _become_subreaper()
    rows = a.rows
    csv_path, summary = generate(rows)
    project = OUT / f"project-{rows}"
    project.mkdir(parents=True, exist_ok=True)
    # The generator mixes US and PH numbers; national US formats need the US region.
    toml = '[settings]\ndatabase = "bench.db"\ndefault_region = "US"\n'
    (project / "campaigns.toml").write_text(toml)
    anchor_project = OUT / f"anchor-{rows}"
    anchor_project.mkdir(parents=True, exist_ok=True)
    (anchor_project / "campaigns.toml").write_text(toml)
    su_db = OUT / f"sqlite-utils-{rows}.db"
    print(
        f"rows={rows:,} file={csv_path.stat().st_size / 2**20:.0f} MiB cpus={os.cpu_count()} "
        f"load average={' '.join(f'{x:.2f}' for x in os.getloadavg())} pairs={a.pairs}"
    )
    runs: dict[str, list[Figures]] = {"campaignctl": [], "sqlite-utils": [], "anchor": []}
    for i in range(a.pairs):
        print(f"pair {i + 1}:")
        # campaignctl runs as `python -m campaignctl` from this checkout (PYTHONPATH).
        runs["campaignctl"].append(campaignctl_run(sys.executable, REPO, project, csv_path))
        runs["sqlite-utils"].append(sqlite_utils_run(su_db, csv_path))
        if a.anchor is not None:
            venv = a.anchor.resolve() / ".venv" / "bin" / "python"
            python = str(venv) if venv.exists() else sys.executable
            runs["anchor"].append(campaignctl_run(python, a.anchor, anchor_project, csv_path))

    cc = runs["campaignctl"]
    read, inserted, duplicates, dropped, rejected = cc[-1].report
    checks = {
        "every run reports the same counts": all(r.report == cc[0].report for r in cc),
        "read == rows": read == rows,
        "duplicates == planted_duplicates": duplicates == summary["planted_duplicates"],
        "inserted + rejected == rows - planted_duplicates": inserted + rejected
        == rows - summary["planted_duplicates"],
        "rejected <= bad_email (rows whose only contact is bad)": rejected <= summary["bad_email"],
        "leads in database == inserted": all(r.rows == inserted for r in cc),
        "sqlite-utils rows == rows": all(r.rows == rows for r in runs["sqlite-utils"]),
    }
    if runs["anchor"]:
        checks["the anchor's counts == these"] = all(
            r.report == cc[0].report for r in runs["anchor"]
        )
    print(f"generator: {' '.join(f'{k}={v}' for k, v in summary.items())}")
    print(
        f"campaignctl: read={read} inserted={inserted} duplicates={duplicates} "
        f"fields_dropped={dropped} rejected={rejected}"
    )
    print()
    print(
        f"{'tool (median of runs)':<28}{'seconds':>10}{'CPU s':>9}{'CPU us/row':>12}"
        f"{'peak MiB':>10}"
    )
    for name, figures in runs.items():
        if not figures:
            continue
        wall = statistics.median(r.wall for r in figures)
        cpu = statistics.median(r.cpu for r in figures)
        rss = max(r.rss for r in figures)
        print(f"{name:<28}{wall:>10.1f}{cpu:>9.1f}{cpu / rows * 1e6:>12.1f}{rss:>10.1f}")
    su = runs["sqlite-utils"]
    wall_ratio = statistics.median(c.wall / s.wall for c, s in zip(cc, su, strict=True))
    cpu_ratio = statistics.median(c.cpu / s.cpu for c, s in zip(cc, su, strict=True))
    print(
        "campaignctl / sqlite-utils (median of pairs): "
        f"wall {wall_ratio:.2f}x, CPU {cpu_ratio:.2f}x"
    )
    if runs["anchor"]:
        an = runs["anchor"]
        print(
            "campaignctl / anchor (median of pairs): "
            f"wall {statistics.median(c.wall / x.wall for c, x in zip(cc, an, strict=True)):.2f}x, "
            f"CPU {statistics.median(c.cpu / x.cpu for c, x in zip(cc, an, strict=True)):.2f}x"
        )
        print(
            "anchor / sqlite-utils (median of pairs): "
            f"wall {statistics.median(x.wall / s.wall for x, s in zip(an, su, strict=True)):.2f}x, "
            f"CPU {statistics.median(x.cpu / s.cpu for x, s in zip(an, su, strict=True)):.2f}x"
        )
    print()
    scaled = statistics.median(r.wall for r in cc) * 1_000_000 / rows
    goals = {
        f"<= 30 s for 1M rows (scaled: {scaled:.1f} s)": scaled <= 30,
        "<= 0.6x sqlite-utils' wall time": wall_ratio <= 0.6,
        "CPU per row below sqlite-utils'": cpu_ratio < 1,
        "<= 64 MiB peak RSS per process": max(r.rss for r in cc) <= 64,
    }
    for name, ok in {**checks, **goals}.items():
        print(f"{'ok  ' if ok else 'MISS'} {name}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
