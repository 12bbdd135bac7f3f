"""A throwaway PostgreSQL cluster for the tests and benchmarks: Debian's server binaries
(/usr/lib/postgresql/*/bin), a data folder in a temporary directory, a free 127.0.0.1 port,
trust authentication on loopback only, and fsync off (a crash loses nothing the tests keep).

As root (the CI container), the server runs as the `postgres` system user (`runuser`), since
PostgreSQL refuses to run as root; otherwise as the current user. Nothing is skipped: when the
binaries are missing or the server does not start, `Cluster.start()` raises `PostgresUnavailable`
with what went wrong and how to fix it (`.ci/deps` installs the `postgresql` package).

    with Cluster() as cluster:
        url = cluster.create_database("t1")  # postgresql+psycopg://postgres@127.0.0.1:PORT/t1

Importing this module loads neither pytest nor a database driver (bench/ uses it too).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

#: Where Debian's server packages put their binaries, newest version last once sorted.
BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: The superuser the cluster is made with (trust auth: no password).
SUPERUSER = "postgres"
#: Settings for speed over durability: a test database is thrown away.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}
HINT = (
    "install Debian's PostgreSQL server (`.ci/deps` does: apt-get install postgresql), "
    "or set CAMPAIGNCTL_PG_BIN to the folder holding initdb and pg_ctl"
)


class PostgresUnavailable(RuntimeError):
    """The throwaway cluster could not be made or started (the message says why)."""


def bin_dir() -> Path:
    """The folder of initdb/pg_ctl: $CAMPAIGNCTL_PG_BIN, else the newest Debian version."""
    if os.environ.get("CAMPAIGNCTL_PG_BIN"):
        found = [os.environ["CAMPAIGNCTL_PG_BIN"]]
    else:
        found = sorted(glob.glob(BIN_GLOB), key=_version_key)
    for folder in reversed(found):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresUnavailable(f"PostgreSQL: no initdb/pg_ctl under {BIN_GLOB}; {HINT}")


def _version_key(folder: str) -> tuple[int, ...]:
    part = Path(folder).parent.name
    return tuple(int(p) for p in part.split(".") if p.isdigit())


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user() -> list[str]:
    """The command prefix that runs the server unprivileged (empty when not root)."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise PostgresUnavailable("PostgreSQL: running as root, and no runuser or setpriv")
        import pwd

        try:
            pw = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise PostgresUnavailable(f"PostgreSQL: no `{SUPERUSER}` system user; {HINT}") from None
        return [
            setpriv,
            f"--reuid={pw.pw_uid}",
            f"--regid={pw.pw_gid}",
            "--clear-groups",
            "--",
        ]
    return [runuser, "-u", SUPERUSER, "--"]


class Cluster:
    """One PostgreSQL server in a temporary folder, removed by `stop()`."""

    def __init__(self, *, prefix: str = "campaignctl-pg-") -> None:
        self.prefix = prefix
        self.bin: Path | None = None
        self.root: Path | None = None
        self.port = 0
        self._serial = 0

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def url(self, database: str = "postgres", *, driver: str = "psycopg") -> str:
        """The SQLAlchemy URL of `database` (`driver=""`: the plain `postgresql://` form)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """The libpq connection string of `database` (for psycopg directly)."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Cluster:
        self.bin = bin_dir()
        prefix = _as_server_user()
        self.root = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.root.chmod(0o755)  # the server user reaches its data folder and log through it
        self.data.mkdir(mode=0o700)
        self.log.touch()
        if prefix:
            shutil.chown(self.data, SUPERUSER, SUPERUSER)
            shutil.chown(self.log, SUPERUSER, SUPERUSER)
        self._run(
            [
                *prefix,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            "initdb",
        )
        # loopback only, and no Unix socket in a shared folder
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\nlisten_addresses = '127.0.0.1'\n")
            conf.write(f"unix_socket_directories = '{self.data}'\n")
            for name, value in FAST_SETTINGS.items():
                conf.write(f"{name} = '{value}'\n")
        last = ""
        for _ in range(5):  # a port taken between free_port() and the bind: try another
            self.port = free_port()
            try:
                self._run(
                    [
                        *prefix,
                        str(self.bin / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.log),
                        "-o",
                        f"-p {self.port}",
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                    "pg_ctl start",
                )
                return self
            except PostgresUnavailable as exc:
                last = str(exc)
                if "Address already in use" not in self.log.read_text(errors="replace"):
                    break
        self._remove()
        raise PostgresUnavailable(last)

    def stop(self) -> None:
        """Stop the server at once and remove its folder."""
        if self.root is None:
            return
        if self.bin is not None and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):
                self._run(
                    [
                        *_as_server_user(),
                        str(self.bin / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                    "pg_ctl stop",
                )
        self._remove()

    def _remove(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, cmd: list[str], what: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd="/", timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.root else ""
            raise PostgresUnavailable(
                f"PostgreSQL: {what} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}\n{log}\nhint: {HINT}"
            )

    # ------------------------------------------------------------------ databases

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement outside a transaction (CREATE/DROP DATABASE); its rows."""
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            cur = conn.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []

    def create_database(self, name: str | None = None, *, template: str = "template0") -> str:
        """A new empty database (copied from `template`); its SQLAlchemy URL."""
        if name is None:
            self._serial += 1
            name = f"t{os.getpid()}_{self._serial}_{int(time.time() * 1000) % 100000}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, ending the connections still open on it."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
