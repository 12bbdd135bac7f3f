"""Everything SQLite-specific: the engine and its pragmas, `BEGIN IMMEDIATE`, `OR IGNORE` and
`OR REPLACE`, the send lock beside the file, the `--dry-run` copy, the in-memory fallback for
readers, the error mapping, and the raw `sqlite3` fast paths of the leads import and the planner.

SQLAlchemy is imported inside the functions that need it: the leads import runs in a lean
process (see `campaignctl.leads.importer._ImportJob`) that reaches `connect_raw` and `errors_mapped`
without loading it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from campaignctl.errors import CampaignctlError
from campaignctl.store.dialect import UNENROLLED_OPTIONAL, PickReads, unenrolled_columns
from campaignctl.store.errors import DatabaseBusyError, DatabaseError
from campaignctl.store.reader import marks, stamp

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy import Engine, Table
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql import Select
    from sqlalchemy.sql.dml import Insert

    from campaignctl.locking import FileLock
    from campaignctl.store.reader import Reader

#: The connection settings every campaignctl process uses on a database file.
PRAGMAS = {
    "journal_mode": "WAL",
    "busy_timeout": "30000",
    "foreign_keys": "ON",
    "synchronous": "FULL",
    # helper threads for a big sort (a GROUP BY over a million rows, as `report`'s): a third
    # off its time on 2 cores; other statements start none
    "threads": str(min(4, os.cpu_count() or 1)),
}
#: The private copies `send --dry-run` works on (`private_copy`): thrown away at its end, so
#: their commits skip the fsync (synchronous=OFF) that a real database's keep.
_SCRATCH: set[str] = set()
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


class SQLiteDialect(PickReads):
    """The `Dialect` for `sqlite:///FILE` URLs."""

    name = "sqlite"
    lead_read: ClassVar[dict[str, str]] = {c: c for c in UNENROLLED_OPTIONAL}

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
        scratch = url in _SCRATCH

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's begin event issue BEGIN, so writers can ask for BEGIN IMMEDIATE.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            for name, value in PRAGMAS.items():
                cur.execute(f"PRAGMA {name}={value}")
            if scratch:
                cur.execute("PRAGMA synchronous=OFF")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    def for_writing(self, conn: Connection) -> None:
        conn.execution_options(sqlite_begin="IMMEDIATE")

    def for_sharing(self, conn: Connection) -> None:
        # no row locks: a write that shares the database still takes the one write lock
        self.for_writing(conn)

    def path(self, url: str) -> Path | None:
        db = database_of(url)
        return Path(db) if db and db != ":memory:" else None

    def where(self, url: str) -> str:
        path = self.path(url)
        return str(path) if path is not None else url

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

    def ddl(self, sql: str) -> str:
        return sql

    def plain(self, raw: Any, sql: str, params: tuple[Any, ...], *, stream: bool) -> Any:
        # sqlite3's cursor fetches as it is iterated: every read streams
        return raw.execute(sql, params)

    def time_param(self, t: datetime) -> Any:
        return stamp(t)

    def json_text(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.\"{key}\"')"

    def plain_reads(self, url: str) -> AbstractContextManager[Reader] | None:
        path = self.path(url)
        if path is None or not path.is_file():
            return None
        import sqlite3

        from campaignctl.store.migrations import MIGRATIONS

        try:
            raw = sqlite3.connect(str(path), timeout=TIMEOUT, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            raw.execute("PRAGMA query_only=ON")
            done = {name for (name,) in raw.execute("SELECT name FROM schema_migration")}
        except sqlite3.Error:  # not a campaignctl database (yet): the Store's open says why
            done = set()
        if done != {name for name, _ in MIGRATIONS}:  # to migrate, or made by a newer one
            raw.close()
            return None
        return _plain_reads(raw, str(path), self)

    def replace_unique(self, conn: Connection, table: str, old: str, new: str) -> None:
        from campaignctl.store.migrations import _rebuild_unique

        _rebuild_unique(conn, table, old, new)

    def insert_ignore(self, table: Table) -> Insert:
        from sqlalchemy import insert

        return insert(table).prefix_with("OR IGNORE")

    def upsert(self, table: Table, key: str, values: dict[str, Any]) -> Any:
        from sqlalchemy import insert

        return insert(table).prefix_with("OR REPLACE").values(**values)

    def lock(self, conn: Connection, key: int) -> None:
        # every write transaction begins IMMEDIATE: it holds the database's one write lock
        return None

    def claim_rows(self, query: Select[Any]) -> Select[Any]:
        return query  # one writer at a time (BEGIN IMMEDIATE): no row is locked by another

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
        _SCRATCH.add(f"sqlite:///{copy}")
        return f"sqlite:///{copy}"

    # -------------------------------------------------------------- the planner's reads

    def unenrolled_lead_rows(
        self, r: Reader, campaign: str, columns: frozenset[str] | None = None
    ) -> Iterator[Any]:
        return r.stream(
            f"SELECT {unenrolled_columns(columns, self.lead_read)} "
            "FROM lead WHERE id NOT IN (SELECT lead_id FROM enrolment WHERE campaign = ?)",
            campaign,
        )

    def pending_rows(self, r: Reader, state: str, campaigns: list[str]) -> Iterator[Any]:
        return r.stream(
            f"SELECT campaign, step, lead_id, due_at FROM message "
            f"WHERE state = ? AND campaign IN {marks(campaigns)}",
            *(state, *campaigns),
        )

    # -------------------------------------------------------------- audiences and enrolment

    def json_field(self, path: str) -> tuple[str, str]:
        return f"json_extract(lead.attrs, {path})", f"json_type(lead.attrs, {path})"

    def json_number(self, path: str) -> str:
        return f"json_extract(lead.attrs, {path})"

    def find_text(self, haystack: str, needle: str) -> str:
        return f"instr({haystack}, {needle})"

    def truth(self, condition: str) -> str:
        return condition

    def json_unreliable(self) -> str:
        # json_extract and json_each end a text at NUL ("\u0000" in the stored JSON)
        return "(instr(lead.attrs, '\\u0000') > 0 OR instr(lead.tags, '\\u0000') > 0)"

    def has_tag(self, tag: str, quoted: str | None) -> str:
        exact = f"EXISTS (SELECT 1 FROM json_each(lead.tags) WHERE json_each.value = {tag})"
        return f"(instr(lead.tags, {quoted}) > 0 AND {exact})" if quoted else f"({exact})"

    def array_has(
        self, path: str, value: str, quoted: str | None = None, *, is_text: bool = True
    ) -> str:
        exact = (
            f"EXISTS (SELECT 1 FROM json_each(lead.attrs, {path}) WHERE json_each.value = {value} "
            "AND json_each.type NOT IN ('array', 'object'))"
        )
        return f"(instr(lead.attrs, {quoted}) > 0 AND {exact})" if quoted else f"({exact})"

    def pick_leads(
        self,
        conn: Connection,
        campaign: str,
        channels: list[str],
        verdict: str,
        params: dict[str, Any],
        *,
        ids: list[int] | None = None,
        stopped_only: bool = False,
    ) -> None:
        # through SQLAlchemy (not the raw connection), so a full or read-only database is
        # reported like any other write (Store._errors_mapped)
        raw = conn
        raw.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS enrol_pick "
            "(lead_id INTEGER PRIMARY KEY, verdict INTEGER)"
        )
        raw.exec_driver_sql("DELETE FROM enrol_pick")
        states = " AND state != 'active'" if stopped_only else ""
        only = ""
        if ids is not None:
            raw.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS enrol_only (lead_id INTEGER PRIMARY KEY)"
            )
            raw.exec_driver_sql("DELETE FROM enrol_only")
            raw.exec_driver_sql(
                "INSERT OR IGNORE INTO enrol_only (lead_id) VALUES (?)", [(i,) for i in ids]
            )
            only = "AND lead.id IN (SELECT lead_id FROM enrol_only) "
        marks = ", ".join(f":pick_ch{i}" for i in range(len(channels)))
        names = {f"pick_ch{i}": ch for i, ch in enumerate(channels)}
        # MATERIALIZED: the verdict is computed once per lead, not again for the WHERE
        raw.exec_driver_sql(
            "WITH c AS MATERIALIZED ("
            f"SELECT lead.id AS id, {verdict} AS v FROM lead "
            "WHERE lead.id NOT IN (SELECT lead_id FROM enrolment WHERE campaign = :pick_campaign"
            f"{states}) {only}"
            f"AND lead.id NOT IN (SELECT lead_id FROM optout WHERE channel IN ({marks})) "
            # an erased lead (`leads delete`: neither email nor phone) never enrols again
            "AND (lead.email IS NOT NULL OR lead.phone IS NOT NULL)"
            ") INSERT INTO enrol_pick (lead_id, verdict) SELECT id, v FROM c WHERE v IS NOT 0",
            {**params, **names, "pick_campaign": campaign},
        )

    def unsure_rows(self, conn: Connection, after: int, limit: int) -> list[Any]:
        # plain tuples from the sqlite3 cursor: a million rows through SQLAlchemy's rows cost
        # a second
        return _raw(conn).execute(_UNSURE_ROWS, (after, limit)).fetchall()

    def settle_picks(self, conn: Connection, verdicts: list[tuple[int, int]]) -> None:
        conn.exec_driver_sql("UPDATE enrol_pick SET verdict = ? WHERE lead_id = ?", verdicts)

    def enrol_picked(
        self, conn: Connection, campaign: str, now: datetime, message: dict[str, Any] | None
    ) -> int:
        cur = conn.exec_driver_sql(
            "INSERT INTO enrolment (campaign, lead_id, state, enrolled_at, updated_at) "
            "SELECT ?, lead_id, 'active', ?, ? FROM enrol_pick WHERE verdict = 1 ORDER BY lead_id",
            (campaign, stamp(now), stamp(now)),
        )
        count = cur.rowcount
        _insert_picked_messages(conn, message)
        return count

    def enrol_picked_event(
        self, conn: Connection, campaign: str, now: datetime, message: dict[str, Any] | None
    ) -> int:
        conn.exec_driver_sql(
            "INSERT OR IGNORE INTO enrolment (campaign, lead_id, state, enrolled_at, updated_at) "
            "SELECT ?, lead_id, 'active', ?, ? FROM enrol_pick WHERE verdict = 1 ORDER BY lead_id",
            (campaign, stamp(now), stamp(now)),
        )
        count = conn.exec_driver_sql("SELECT count(*) FROM enrol_pick WHERE verdict = 1").scalar()
        _insert_picked_messages(conn, message)
        return int(count or 0)

    def picked_rows_outside(
        self, conn: Connection, timezones: list[str], after: int, limit: int
    ) -> list[Any]:
        _zone_table(conn, timezones)
        return list(
            conn.exec_driver_sql(
                "SELECT lead.id, lead.timezone, lead.phone FROM enrol_pick "
                "JOIN lead ON lead.id = enrol_pick.lead_id "
                "WHERE verdict = 1 AND lead.id > ? "
                "AND (lead.timezone IS NULL OR lead.timezone NOT IN (SELECT name FROM enrol_zone)) "
                "ORDER BY lead.id LIMIT ?",
                (after, limit),
            ).fetchall()
        )

    def note_picked_dues(self, conn: Connection, dues: list[tuple[int, datetime]]) -> None:
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS enrol_due (lead_id INTEGER PRIMARY KEY, due TEXT)"
        )
        _raw(conn).executemany(
            "INSERT OR REPLACE INTO enrol_due (lead_id, due) VALUES (?, ?)",
            [(i, stamp(due)) for i, due in dues],
        )

    def insert_picked_messages_due(
        self, conn: Connection, message: dict[str, Any], dues: dict[str, datetime]
    ) -> None:
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS enrol_due (lead_id INTEGER PRIMARY KEY, due TEXT)"
        )
        stamps: list[str | None] = [stamp(d) for d in dues.values()]
        _zone_table(conn, list(dues), stamps)
        cols = list(message)
        values = [stamp(v) if isinstance(v, datetime) else v for v in message.values()]
        conn.exec_driver_sql(
            f"INSERT OR IGNORE INTO message ({', '.join(cols)}, due_at, lead_id) "
            f"SELECT {', '.join('?' * len(cols))}, coalesce(enrol_zone.due, enrol_due.due), "
            "enrol_pick.lead_id FROM enrol_pick JOIN lead ON lead.id = enrol_pick.lead_id "
            "LEFT JOIN enrol_zone ON enrol_zone.name = lead.timezone "
            "LEFT JOIN enrol_due ON enrol_due.lead_id = enrol_pick.lead_id "
            "WHERE verdict = 1 ORDER BY enrol_pick.lead_id",
            tuple(values),
        )
        conn.exec_driver_sql("DELETE FROM enrol_due")


def _zone_table(conn: Connection, names: list[str], dues: list[str | None] | None = None) -> None:
    """The temp table `enrol_zone`: these time zone names, with their due times if given."""
    conn.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS enrol_zone (name TEXT PRIMARY KEY, due TEXT)"
    )
    conn.exec_driver_sql("DELETE FROM enrol_zone")
    rows = list(zip(names, dues if dues is not None else [None] * len(names), strict=True))
    if rows:
        _raw(conn).executemany("INSERT INTO enrol_zone (name, due) VALUES (?, ?)", rows)


def _insert_picked_messages(conn: Connection, message: dict[str, Any] | None) -> None:
    """`message` (its columns but `lead_id`) for each matching pick; one already there is kept."""
    if not message:
        return
    cols = list(message)
    values = [stamp(v) if isinstance(v, datetime) else v for v in message.values()]
    conn.exec_driver_sql(
        f"INSERT OR IGNORE INTO message ({', '.join(cols)}, lead_id) "
        f"SELECT {', '.join('?' * len(cols))}, lead_id FROM enrol_pick "
        "WHERE verdict = 1 ORDER BY lead_id",
        tuple(values),
    )


@contextmanager
def _plain_reads(raw: sqlite3.Connection, where: str, dialect: SQLiteDialect) -> Iterator[Reader]:
    """One read transaction (a snapshot of the file) on `raw`, closed at its end."""
    from campaignctl.store.reader import Reader

    try:
        with errors_mapped(where):
            raw.execute("BEGIN")
            yield Reader(raw, dialect)
    finally:
        raw.close()


_UNSURE_ROWS = (
    "SELECT lead.id, lead.email, lead.phone, lead.first_name, lead.last_name, lead.timezone, "
    "lead.status, lead.tags, lead.attrs FROM enrol_pick "
    "JOIN lead ON lead.id = enrol_pick.lead_id "
    "WHERE enrol_pick.verdict IS NULL AND enrol_pick.lead_id > ? "
    "ORDER BY enrol_pick.lead_id LIMIT ?"
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
IMPORT_PRAGMAS = {"cache_size": -16384, "wal_autocheckpoint": 50000, "synchronous": "NORMAL"}
_INSERT_LEAD = (
    "INSERT INTO lead (email, phone, first_name, last_name, timezone, tags, attrs, "
    "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'new', :now, :now) "
    "ON CONFLICT DO NOTHING"
)

_FIND_BY_EMAIL = (
    "SELECT id, phone, first_name, last_name, timezone, tags, attrs FROM lead WHERE email = ?"
)
_FIND_BY_PHONE = (
    "SELECT id, phone, first_name, last_name, timezone, tags, attrs FROM lead WHERE phone = ?"
)
_UPDATE_LEAD = (
    "UPDATE lead SET phone = ?, first_name = ?, last_name = ?, timezone = ?, tags = ?, "
    "attrs = ?, updated_at = :now WHERE id = ?"
)
# The same without the phone, which most updates leave: its unique index is not touched.
_UPDATE_LEAD_KEEPING_PHONE = (
    "UPDATE lead SET first_name = ?, last_name = ?, timezone = ?, tags = ?, "
    "attrs = ?, updated_at = :now WHERE id = ?"
)
# The journal's kinds as `store.journal.Kind` spells them (that module loads SQLAlchemy, which
# the import process does without); tests/test_leads_update.py reads the rows back as Kinds.
_JOURNAL_IMPORTED = (
    "INSERT INTO journal (at, kind, lead_id, source, detail) VALUES "
    "(:now, 'lead.imported', ?, 'import', json_object('file', :file, 'line', ?))"
)
_JOURNAL_ROW = (
    "INSERT INTO journal (at, kind, lead_id, code, source, detail) "
    "VALUES (:now, ?, ?, ?, 'import', ?)"
)


def _quote(text: str) -> str:
    """A JSON string (the C quoting `json.dumps(..., ensure_ascii=False)` uses): journal details
    are joined by hand, a few times faster than `json.dumps` on a small dict."""
    from json.encoder import encode_basestring

    return str(encode_basestring(text))


class LeadInserts:
    """The leads import's writes through plain sqlite3, one row at a time in file order.

    `insert(values)` runs the prepared INSERT for (email, phone, first_name, last_name,
    timezone, tags JSON, attrs JSON) and returns the cursor: its `rowcount` is 0 when a unique
    index refused the row (`ON CONFLICT DO NOTHING`). It is `cursor.execute` with the statement
    bound, so the per-row cost is the driver's alone. `find` and `updated` serve
    `--update`; the journal rows (`imported`, `updated`, `tagged`) go in with the lead's
    change, in the same transaction, `source` naming the file.
    """

    def __init__(self, conn: sqlite3.Connection, now: datetime, source: str = "") -> None:
        from functools import partial

        self.conn = conn
        # The format SQLAlchemy's DateTime uses on SQLite, naive UTC (see schema.UTCDateTime);
        # a literal, made here from a datetime, so the insert binds only the lead's values.
        stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        self.insert = partial(conn.cursor().execute, _INSERT_LEAD.replace(":now", f"'{stamp}'"))
        self._by_email = partial(conn.cursor().execute, _FIND_BY_EMAIL)
        self._by_phone = partial(conn.cursor().execute, _FIND_BY_PHONE)
        # The file's name is bound once as a literal (quoted), like the time stamp.
        file = "'" + source.replace("'", "''") + "'"
        self._imported_sql = _JOURNAL_IMPORTED.replace(":now", f"'{stamp}'").replace(":file", file)
        self._update = partial(conn.cursor().execute, _UPDATE_LEAD.replace(":now", f"'{stamp}'"))
        self._update_keeping_phone = partial(
            conn.cursor().execute, _UPDATE_LEAD_KEEPING_PHONE.replace(":now", f"'{stamp}'")
        )
        self._journal_sql = _JOURNAL_ROW.replace(":now", f"'{stamp}'")
        self._pending: list[tuple[Any, ...]] = []
        self.source = source
        self._file = _quote(source)
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

    def phone_taken(self, phone: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM lead WHERE phone = ?", (phone,)).fetchone() is not None
        )

    def find(self, email: str | None, phone: str | None) -> tuple[Any, ...] | None:
        """(id, phone, first_name, last_name, timezone, tags, attrs) of the lead a row names:
        by its email when it has one, else by its phone (the import's identity rule)."""
        if email is not None:
            found: tuple[Any, ...] | None = self._by_email((email,)).fetchone()
        else:
            found = self._by_phone((phone,)).fetchone()
        return found

    def imported(self, leads: list[tuple[int | None, int]]) -> None:
        """Journal rows `lead.imported` (file, line) for (lead id, line) pairs, in this
        transaction: one `executemany` per chunk."""
        if leads:
            self.conn.executemany(self._imported_sql, leads)

    def updated(self, lead_id: int, values: tuple[Any, ...], fields: list[str], line: int) -> None:
        """Store a lead's new (phone, first_name, last_name, timezone, tags JSON, attrs JSON);
        its journal row `lead.updated` (the changed fields' names) waits for `flush`."""
        if "phone" in fields:
            self._update((*values, lead_id))
        else:
            self._update_keeping_phone((*values[1:], lead_id))
        if fields:
            names = ",".join(map(_quote, fields))
            detail = f'{{"fields":[{names}],"file":{self._file},"line":{line}}}'
            self._pending.append(("lead.updated", lead_id, None, detail))

    def tagged(self, lead_id: int, code: str, tag: str, line: int) -> None:
        """A journal row `lead.tag` (code: added | removed), written by `flush`."""
        detail = f'{{"tag":{_quote(tag)},"file":{self._file},"line":{line}}}'
        self._pending.append(("lead.tag", lead_id, code, detail))

    def flush(self) -> None:
        """Write the journal rows `updated` and `tagged` collected, in this transaction."""
        if self._pending:
            self.conn.executemany(self._journal_sql, self._pending)
            self._pending.clear()


def suppression_of(conn: sqlite3.Connection) -> tuple[bytes | None, frozenset[str]]:
    """The suppression key and every suppressed hash, for the leads import's report (none in an
    in-memory copy of the lead table, which has no suppression list)."""
    import sqlite3

    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'suppression.key'").fetchone()
        if row is None:
            return None, frozenset()
        hashes = frozenset(h for (h,) in conn.execute("SELECT DISTINCT hash FROM suppression"))
    except sqlite3.OperationalError:  # no such table: a dry run's in-memory lead table
        return None, frozenset()
    return bytes.fromhex(row[0]), hashes


def lead_schema(engine: Any) -> tuple[str, ...]:
    """The lead and journal tables' CREATE statements (each table before its indexes), to
    rebuild them in an in-memory database of another connection."""
    from contextlib import closing

    with closing(engine.raw_connection()) as raw:
        rows = raw.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN ('lead', 'journal') "
            "AND sql IS NOT NULL ORDER BY tbl_name DESC, type DESC"
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
