"""Everything SQLite-specific: the engine and its pragmas, `BEGIN IMMEDIATE`, `OR IGNORE` and
`OR REPLACE`, the send lock beside the file, the `--dry-run` copy, the in-memory fallback for
readers, the error mapping, and the raw `sqlite3` fast paths of the leads import and the planner.

SQLAlchemy is imported inside the functions that need it: the leads import runs in a lean
process (see `campaignctl.leads.importer._ImportJob`) that reaches `connect_raw` and `errors_mapped`
without loading it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from campaignctl.errors import CampaignctlError
from campaignctl.store.errors import DatabaseBusyError, DatabaseError

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy import Engine, Table
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql.dml import Insert

    from campaignctl.locking import FileLock

#: The connection settings every campaignctl process uses on a database file.
PRAGMAS = {
    "journal_mode": "WAL",
    "busy_timeout": "30000",
    "foreign_keys": "ON",
    "synchronous": "FULL",
}
#: The connection the leads import writes through (plain sqlite3, no SQLAlchemy).
RawConnection: TypeAlias = "sqlite3.Connection"
#: Seconds a connection waits for another process's lock.
TIMEOUT = 30


def database_of(url: str) -> str:
    """The part of a SQLite URL after `:///`: a file path, `:memory:` or ''."""
    return url.split(":///", 1)[-1]


# SQLite's primary result codes that say something about the file, the disk or another process
# (sqlite.org/rescode.html); SQLITE_ERROR (1) and constraint errors are ours and stay bugs.
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_NOTADB = 26
_ENVIRONMENT_HINTS = {
    _SQLITE_READONLY: "make the database file, its -wal and -shm files and its folder "
    "writable by this user",
    _SQLITE_PERM: "make the database file, its -wal and -shm files and its folder "
    "writable by this user",
    _SQLITE_FULL: "free some space on the database's disk, then run the command again "
    "(whole transactions are kept)",
    _SQLITE_IOERR: "check the database's disk (full? read-only? removed?), then run the "
    "command again (whole transactions are kept)",
    _SQLITE_CANTOPEN: "check that the database's folder exists and is writable by this user",
    _SQLITE_CORRUPT: "point settings.database at a campaignctl database, or restore a backup",
    _SQLITE_NOTADB: "point settings.database at a campaignctl database, or restore a backup",
    _SQLITE_BUSY: "another process held the database for 30 s; try again when it ends",
    _SQLITE_LOCKED: "another process held the database for 30 s; try again when it ends",
}


def database_error(database: object, exc: BaseException) -> DatabaseError | None:
    """Our error for a SQLite error about the file, disk or lock (SQLAlchemy's wrapper or the
    sqlite3 exception itself); None for any other error, which is left to propagate as a bug.

    Only SQLite's own one-line message is kept: never the SQL, its parameters or SQLAlchemy's
    "Background on this error" line.
    """
    orig = getattr(exc, "orig", exc)  # sqlalchemy.exc.DBAPIError wraps the sqlite3 error
    code = getattr(orig, "sqlite_errorcode", None)
    if not isinstance(code, int) or (code & 0xFF) not in _ENVIRONMENT_HINTS:
        return None
    primary = code & 0xFF
    reason = str(orig.args[0] if orig.args else orig).splitlines()[0]
    cls = DatabaseBusyError if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) else DatabaseError
    return cls(f"{database}: cannot use the database: {reason}", _ENVIRONMENT_HINTS[primary])


class SQLiteDialect:
    """The `Dialect` for `sqlite:///FILE` URLs."""

    name = "sqlite"

    def check(self, url: str) -> None:
        db = database_of(url)
        if db and db != ":memory:" and not Path(db).parent.is_dir():
            raise CampaignctlError(
                f"{db}: the database's folder does not exist",
                "create the folder, or set settings.database in the campaign file",
            )

    def create_engine(self, url: str) -> Engine:
        from sqlalchemy import create_engine, event

        engine = create_engine(url, connect_args={"timeout": TIMEOUT, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's begin event issue BEGIN, so writers can ask for BEGIN IMMEDIATE.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            for name, value in PRAGMAS.items():
                cur.execute(f"PRAGMA {name}={value}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    def for_writing(self, conn: Connection) -> None:
        conn.execution_options(sqlite_begin="IMMEDIATE")

    def path(self, url: str) -> Path | None:
        db = database_of(url)
        return Path(db) if db and db != ":memory:" else None

    def exists(self, url: str) -> bool:
        db = database_of(url)
        return bool(db) and db != ":memory:" and Path(db).is_file()

    def in_memory(self, url: str) -> bool:
        return database_of(url) in ("", ":memory:")

    def reading_url(self, url: str) -> str:
        # A file that does not exist yet: an empty database in memory, so reading never
        # creates the file; only commands that write do.
        db = database_of(url)
        if db and db != ":memory:" and not Path(db).exists():
            return "sqlite:///:memory:"
        return url

    def map_error(self, where: str, exc: BaseException) -> DatabaseError | None:
        return database_error(where, exc)

    def insert_ignore(self, table: Table) -> Insert:
        from sqlalchemy import insert

        return insert(table).prefix_with("OR IGNORE")

    def upsert(self, table: Table, key: str, values: dict[str, Any]) -> Any:
        from sqlalchemy import insert

        return insert(table).prefix_with("OR REPLACE").values(**values)

    def send_lock(self, url: str) -> FileLock | None:
        from campaignctl.locking import FileLock

        path = self.path(url)
        if path is None:
            return None
        return FileLock(path.with_name(path.name + ".send.lock"), "send lock")

    def private_copy(self, url: str, folder: Path) -> str:
        import sqlite3

        copy = folder / "dry.db"
        path = self.path(url)
        if path is not None:  # else no database yet (Store.for_reading): start empty
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            dst = sqlite3.connect(copy)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        return f"sqlite:///{copy}"

    # -------------------------------------------------------------- the planner's reads

    def lead_rows(self, conn: Connection) -> Iterator[Any]:
        return _raw(conn).execute("SELECT id, email, phone, timezone FROM lead")

    def unenrolled_lead_rows(self, conn: Connection, campaign: str) -> Iterator[Any]:
        return _raw(conn).execute(
            "SELECT id, email, phone, first_name, last_name, timezone, status, tags, attrs "
            "FROM lead WHERE id NOT IN (SELECT lead_id FROM enrolment WHERE campaign = ?)",
            (campaign,),
        )

    def pending_rows(self, conn: Connection, state: str, campaigns: list[str]) -> Iterator[Any]:
        marks = ",".join("?" * len(campaigns))
        return _raw(conn).execute(
            "SELECT campaign, step, lead_id, due_at FROM message "
            f"WHERE state = ? AND campaign IN ({marks})",
            (state, *campaigns),
        )


def _raw(conn: Connection) -> sqlite3.Connection:
    """The sqlite3 connection under a SQLAlchemy one (same transaction)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return raw  # type: ignore[return-value]


# ---------------------------------------------------------------- raw sqlite3 fast paths

# Settings of the importing connection (its own, closed afterwards): an 8 MiB page cache, a WAL
# checkpointed every 20,000 pages (80 MiB) instead of 1,000, and synchronous=NORMAL: with WAL
# that loses no committed transaction when a process crashes, only (on power loss) the last
# few, and importing the file again completes them without inserting anything twice.
# Every insert touches a random page of the email and phone indexes: a bigger cache,
# transactions of many chunks and rarer checkpoints write each page fewer times.
IMPORT_PRAGMAS = {"cache_size": -8192, "wal_autocheckpoint": 20000, "synchronous": "NORMAL"}
_INSERT_LEAD = (
    "INSERT INTO lead (email, phone, first_name, last_name, timezone, tags, attrs, "
    "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'new', :now, :now) "
    "ON CONFLICT DO NOTHING"
)


class LeadInserts:
    """The leads import's writes through plain sqlite3, one row at a time in file order.

    `insert(values)` runs the prepared INSERT for (email, phone, first_name, last_name,
    timezone, tags JSON, attrs JSON) and returns the cursor: its `rowcount` is 0 when a unique
    index refused the row (`ON CONFLICT DO NOTHING`). It is `cursor.execute` with the statement
    bound, so the per-row cost is the driver's alone.
    """

    def __init__(self, conn: sqlite3.Connection, now: datetime) -> None:
        from functools import partial

        self.conn = conn
        # The format SQLAlchemy's DateTime uses on SQLite, naive UTC (see schema.UTCDateTime);
        # a literal, made here from a datetime, so the insert binds only the lead's values.
        stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        self.insert = partial(conn.cursor().execute, _INSERT_LEAD.replace(":now", f"'{stamp}'"))
        for name, value in IMPORT_PRAGMAS.items():
            conn.execute(f"PRAGMA {name}={value}")

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def email_taken(self, email: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM lead WHERE email = ?", (email,)).fetchone() is not None
        )


def lead_schema(engine: Any) -> tuple[str, ...]:
    """The lead table's CREATE statements (the table before its indexes), to rebuild it in an
    in-memory database of another connection."""
    from contextlib import closing

    with closing(engine.raw_connection()) as raw:
        rows = raw.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'lead' AND sql IS NOT NULL "
            "ORDER BY type DESC"
        ).fetchall()
    return tuple(sql for (sql,) in rows)


def connect_raw(path: str, schema: tuple[str, ...] = ()) -> sqlite3.Connection:
    """A plain sqlite3 connection with the Store's settings that matter to a writer (BEGIN is
    issued by the caller); `schema` is run first (an in-memory copy of the lead table)."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=TIMEOUT, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    for sql in schema:
        conn.execute(sql)
    return conn


@contextmanager
def errors_mapped(database: str) -> Iterator[None]:
    """A read-only, full or locked database file as one line naming it (see `database_error`)."""
    import sqlite3

    try:
        yield
    except sqlite3.Error as exc:
        mapped = database_error(database, exc)
        if mapped is None:
            raise
        raise mapped from None
