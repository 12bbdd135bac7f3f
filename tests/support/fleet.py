"""Several real `campaignctl daemon` processes on one database, each its own host and outbox.

Used by tests/test_pg_daemons.py (a few thousand messages) and bench/pg_daemons.py (the full
20,000 and the throughput figures). Daemon `i` runs with `CAMPAIGNCTL_HOST=host-i` (each is a
host of its own, as on several machines) from `c<i>.toml`, whose `sms` outbox channel writes to
`out-<i>`: a message sent by two daemons shows up in two folders, and one written twice in the
same folder keeps neither its inode nor its mtime. Logs go to `daemon-<i>.log`, never to a pipe
(a full pipe would stall a daemon).

Importing this module loads no database library: the rows are read with sqlite3 or psycopg
directly, whichever the URL names, so the harness judges the engine with SQL of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` on the database at `url` (SQLite or PostgreSQL), read with its own driver."""
    if url.startswith("sqlite"):
        import sqlite3

        lite = sqlite3.connect(url.split(":///", 1)[1], timeout=30)
        try:
            return list(lite.execute(sql))
        finally:
            lite.close()
    import psycopg

    dsn = "postgresql://" + url.split("://", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as con:
        return list(con.execute(sql.encode()))


def _time(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@dataclass
class Row:
    id: int
    state: str
    sent_at: datetime | None
    claimed_by: str | None


class Fleet:
    """`daemons` daemon configurations on the database at `url`, in `folder`."""

    def __init__(
        self, folder: Path, url: str, daemons: int, limits: str = "", tick: str = "1s"
    ) -> None:
        self.folder = folder
        self.url = url
        self.count = daemons
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.configs = [self._config(i, limits, tick) for i in range(daemons)]

    def _config(self, i: int, limits: str, tick: str) -> Path:
        path = self.folder / f"c{i}.toml"
        path.write_text(
            f"""[settings]
database = "{self.url}"
timezone = "UTC"

[sender]
name = "Ana Cruz"
email = "ana@sunrise.example"
postal_address = "12 Ayala Ave, Makati City"

[daemon]
tick = "{tick}"
sync_interval = "1h"

[channels.sms]
provider = "outbox"
kind = "sms"
path = "out-{i}"
{limits}

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{{{ lead.first_name }}}}"
"""
        )
        return path

    def env(self, i: int) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "CAMPAIGNCTL_HOST": f"host-{i}"}
        env.pop("CAMPAIGNCTL_DATABASE", None)  # the config names the database
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A campaignctl command on daemon 0's configuration; it must succeed."""
        done = subprocess.run(
            [sys.executable, "-m", "campaignctl", "--config", str(self.configs[0]), *args],
            env=self.env(0),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (done.stdout, done.stderr)
        return done

    def import_leads(self, n: int) -> None:
        """n leads with a phone each, through `leads import` (COPY on PostgreSQL)."""
        csv = self.folder / "leads.csv"
        lines = ["email,phone,first_name"]
        lines += [f"l{i}@ex.com,+1646{2000000 + i:07d},N{i}" for i in range(n)]
        csv.write_text("\n".join(lines) + "\n")
        self.cli("leads", "import", str(csv))

    def start(self, i: int) -> subprocess.Popen[bytes]:
        """Daemon i, its log appended to `daemon-<i>.log`."""
        log = open(self.folder / f"daemon-{i}.log", "ab")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "campaignctl",
                "--config",
                str(self.configs[i]),
                "daemon",
                "--no-live",
            ],
            env=self.env(i),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[i] = proc
        return proc

    def kill(self, i: int) -> None:
        """SIGKILL daemon i and reap it (a zombie's pid would still look alive)."""
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self) -> list[int]:
        """SIGTERM every daemon (each finishes its message in flight); their exit codes."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs.values():
            try:
                codes.append(proc.wait(timeout=120))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        self.procs.clear()
        return codes

    def log(self, i: int) -> str:
        return (self.folder / f"daemon-{i}.log").read_text(errors="replace")

    # -------------------------------------------------------------- what happened

    def rows(self) -> list[Row]:
        return [
            Row(int(r[0]), str(r[1]), _time(r[2]) if r[2] is not None else None, r[3])
            for r in query(
                self.url, "SELECT id, state, sent_at, claimed_by FROM message ORDER BY id"
            )
        ]

    def states(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in query(self.url, _STATES)}

    def beats_after(self, t: datetime) -> int:
        """How many workers have beaten after `t` (aware)."""
        beats = [_time(r[0]) for r in query(self.url, "SELECT heartbeat_at FROM worker")]
        return sum(1 for b in beats if (b if b.tzinfo else b.replace(tzinfo=UTC)) > t)

    def claims_of(self, i: int) -> int:
        """How many messages daemon i has `sending` now."""
        proc = self.procs[i]
        sql = (
            "SELECT count(*) FROM message WHERE state = 'sending' "
            f"AND claimed_by LIKE 'host-{i}:{proc.pid}:%'"
        )
        return int(query(self.url, sql)[0][0])

    def files(self) -> dict[int, dict[str, tuple[int, int]]]:
        """Per daemon: its outbox's files, name -> (inode, mtime in ns)."""
        out: dict[int, dict[str, tuple[int, int]]] = {}
        for i in range(self.count):
            folder = self.folder / f"out-{i}"
            found = folder.glob("*.json") if folder.is_dir() else []
            out[i] = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in found}
        return out

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `done` every 20 ms; fail with the daemons' logs after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done():
            for i, proc in self.procs.items():
                assert proc.poll() is None, f"daemon {i} exited {proc.returncode}: {self.log(i)}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.states()}"
            time.sleep(0.02)


_STATES = "SELECT state, count(*) FROM message GROUP BY state"


def duplicates(files: dict[int, dict[str, tuple[int, int]]]) -> set[str]:
    """Messages whose file is in more than one outbox: sent twice."""
    seen: set[str] = set()
    twice: set[str] = set()
    for names in files.values():
        twice |= seen & set(names)
        seen |= set(names)
    return twice


def worst_window(times: list[datetime], span: timedelta) -> int:
    """The most sends in any rolling window of `span` (each window starting at a send)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + span:
            j += 1
        best = max(best, j - i)
    return best
