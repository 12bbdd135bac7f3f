"""Daemons side by side on PostgreSQL (issue 16): aggregate throughput through the outbox, and the
proof at full size.

    python bench/pg_daemons.py [MESSAGES]            throughput: 1, 2 and 4 daemons on
                                                     PostgreSQL, 1 on SQLite (default 20000)
    python bench/pg_daemons.py [MESSAGES] --proof    4 daemons, daily_limit = MESSAGES / 4:
                                                     exactly that many sent, none twice; then
                                                     the limit lifted, two daemons killed -9
                                                     mid-send and restarted: none twice, none lost

Each daemon is a real `campaignctl daemon` process with its own host name and outbox folder
(tests/support/fleet.py, the harness tests/test_pg_daemons.py uses), on a throwaway cluster
(tests/support/postgres.py, fsync off) with pg_stat_statements loaded. Throughput is the
messages sent between the first send seen and the last, over that time (the daemons' start-up
is left out), polled every 50 ms. The database's cost per message: statements the server ran
(pg_stat_statements `calls`) and their execution time, and the server's CPU time (the
postmaster's children, reaped once the daemons stop). No limits, one SMS step, no enrolment
wait: the engine's own cost. The machine's 2 cores run the daemons and the server together.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import postgres  # noqa: E402
from tests.support.fleet import Fleet, duplicates, query, worst_window  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def _server_cpu(cluster: postgres.Cluster) -> float:
    """Seconds of CPU the server has used: the postmaster and its reaped children."""
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS  # utime stime cutime cstime


def _stats(url: str) -> tuple[int, float]:
    """(statements, ms executing them) on this database since the last reset."""
    rows = query(
        url,
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM "
        "pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
        "WHERE datname = current_database())",
    )
    return int(rows[0][0]), float(rows[0][1])


def throughput(folder: Path, url: str, daemons: int, n: int) -> tuple[float, float]:
    """(messages a second, wall seconds) for `daemons` daemons sending n messages."""
    fleet = Fleet(folder, url, daemons)
    fleet.import_leads(n)
    start = time.monotonic()
    first_t = first_n = None
    try:
        for i in range(daemons):
            fleet.start(i)
        while True:
            states = fleet.states()
            assert not states.keys() - {"pending", "sending", "sent"}, states
            sent = states.get("sent", 0)
            if first_t is None and sent:
                first_t, first_n = time.monotonic(), sent
            if sent >= n:
                break
            if time.monotonic() - start > 1800:
                raise SystemExit(f"timed out: {fleet.states()}")
            time.sleep(0.05)
        end = time.monotonic()
    finally:
        fleet.stop()
    files = fleet.files()
    assert not duplicates(files), "sent twice"
    assert sum(len(f) for f in files.values()) == n
    assert first_t is not None
    assert first_n is not None
    rate = (n - first_n) / max(end - first_t, 1e-9)
    return rate, end - start


def run_throughput(n: int) -> None:
    print(f"{n:,} messages through the outbox, no limits, one SMS step")
    postgres.FAST_SETTINGS["shared_preload_libraries"] = "pg_stat_statements"
    with postgres.Cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        for daemons in (1, 2, 4):
            url = cluster.create_database(f"bench{daemons}")
            cluster.execute("CREATE EXTENSION pg_stat_statements", f"bench{daemons}")
            folder = Path(tmp) / f"pg{daemons}"
            folder.mkdir()
            Fleet(folder, url, 1).cli("status")  # the schema made before the clock starts
            query(url, "SELECT pg_stat_statements_reset()")
            cpu = _server_cpu(cluster)
            rate, wall = throughput(folder, url, daemons, n)
            cpu = _server_cpu(cluster) - cpu
            calls, ms = _stats(url)
            print(
                f"postgresql, {daemons} daemon(s): {rate:,.0f} msg/s (wall {wall:.1f} s with "
                f"start-up and import); per message: {calls / n:.1f} statements, "
                f"{ms / n:.2f} ms executing them, {cpu * 1000 / n:.2f} ms server CPU"
            )
            shutil.rmtree(folder, ignore_errors=True)
        folder = Path(tmp) / "sqlite"
        folder.mkdir()
        url = f"sqlite:///{folder / 'campaignctl.db'}"
        rate, wall = throughput(folder, url, 1, n)
        print(f"sqlite, 1 daemon: {rate:,.0f} msg/s (wall {wall:.1f} s with start-up and import)")
    _peak()


def run_proof(n: int) -> None:
    limit = n // 4
    print(f"proof: 4 daemons, {n:,} messages, daily_limit = {limit:,}")
    with postgres.Cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        url = cluster.create_database("proof")
        fleet = Fleet(Path(tmp), url, 4, limits=f"daily_limit = {limit}")
        fleet.import_leads(n)
        t0 = time.monotonic()
        try:
            for i in range(4):
                fleet.start(i)
            fleet.wait(lambda: fleet.states().get("sent", 0) >= limit, 1800, "the limit")
            fleet.wait(lambda: fleet.states().get("sending", 0) == 0, 120, "no claim out")
            after = datetime.now(UTC) + timedelta(seconds=2)
            fleet.wait(lambda: fleet.beats_after(after) == 4, 120, "two more ticks each")
            states = fleet.states()
            files = fleet.files()
            times = [r.sent_at for r in fleet.rows() if r.sent_at is not None]
            print(
                f"limited: {states.get('sent', 0):,} sent (limit {limit:,}), "
                f"{len(duplicates(files))} sent twice, most in a rolling day "
                f"{worst_window(times, timedelta(days=1)):,}, per daemon "
                f"{[len(f) for f in files.values()]}, {time.monotonic() - t0:.1f} s"
            )
            assert states.get("sent") == limit
            assert not duplicates(files)
            for i in range(4):  # the limit lifted: the daemons reload their files
                fleet._config(i, "", "1s")
            for victim in (0, 1):
                fleet.wait(lambda v=victim: fleet.claims_of(v) > 0, 600, "a claim")
                fleet.kill(victim)
            killed = {k: v for names in fleet.files().values() for k, v in names.items()}
            out = fleet.states()
            for victim in (0, 1):
                fleet.start(victim)
            fleet.wait(lambda: fleet.states() == {"sent": n}, 1800, "every message sent")
        finally:
            codes = fleet.stop()
        files = fleet.files()
        everything = {k: v for names in files.values() for k, v in names.items()}
        rewritten = [k for k in killed if everything.get(k) != killed[k]]
        print(
            f"killed two daemons with {out.get('sending', 0)} claims out; after the restart: "
            f"{len(everything):,} files for {n:,} messages, {len(duplicates(files))} sent "
            f"twice, {len(rewritten)} written again, exit codes {codes}, "
            f"{time.monotonic() - t0:.1f} s in all"
        )
        assert len(everything) == n
        assert not duplicates(files)
        assert not rewritten
    _peak()


def _peak() -> None:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: this process {own:.0f} MiB, largest daemon or command {kids:.0f} MiB")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 20000
    if "--proof" in sys.argv[1:]:
        run_proof(n)
    else:
        run_throughput(n)


if __name__ == "__main__":
    main()
