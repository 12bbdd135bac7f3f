"""What differs between databases, behind one interface, and the factory that picks it.

`dialect_for(url)` maps a database URL's scheme to its `Dialect` (cached: one object per
scheme): SQLite (`store.sqlite`) and PostgreSQL (`store.postgres`, `postgresql://` and
`postgres://`). The migrations are written in SQLite's words; `Dialect.ddl` translates them.

Importing this module loads no SQLAlchemy: the lean leads-import process reaches the SQLite
fast path through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from campaignctl.errors import CampaignctlError

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql import Select
    from sqlalchemy.sql.dml import Insert

    from campaignctl.locking import Lock
    from campaignctl.store.errors import DatabaseError
    from campaignctl.store.reader import Reader


#: The columns `Dialect.unenrolled_lead_rows` may leave out, in the order of its rows.
UNENROLLED_OPTIONAL = ("first_name", "last_name", "timezone", "status", "tags", "attrs")


def unenrolled_columns(columns: frozenset[str] | None, read: dict[str, str]) -> str:
    """The select list of `Dialect.unenrolled_lead_rows`: `read[c]` (how the dialect reads
    column c) for the columns in `columns` (all when None), NULL for the others."""
    return ", ".join(
        ["id", "email", "phone"]
        + [read[c] if columns is None or c in columns else "NULL" for c in UNENROLLED_OPTIONAL]
    )


class Dialect(Protocol):
    """One database family's SQL and file handling."""

    name: str
    #: How plain SQL reads each of `UNENROLLED_OPTIONAL` (the JSON columns as their text, which
    #: `audience.row_context` decodes).
    lead_read: ClassVar[dict[str, str]]

    def check(self, url: str) -> None:
        """Raise a CampaignctlError when `url` cannot be opened (e.g. its folder is missing)."""

    def create_engine(self, url: str) -> Engine:
        """The SQLAlchemy engine, with the connection settings this family needs."""

    def for_writing(self, conn: Connection) -> None:
        """Make the next transaction on `conn` take the write lock at its start."""

    def for_sharing(self, conn: Connection) -> None:
        """Make the next transaction on `conn` a write that runs beside other processes'
        writes, relying on the row and named locks it takes itself (`Store.write(shared=True)`);
        where the database has no such locks (SQLite), the same as `for_writing`."""

    def path(self, url: str) -> Path | None:
        """The database file (lock files live beside it); None when there is none."""

    def where(self, url: str) -> str:
        """The database as errors name it: its file, else its URL without a password."""

    def exists(self, url: str) -> bool:
        """Whether the database is there already (opening it would not create it)."""

    def in_memory(self, url: str) -> bool:
        """Whether the database lives in memory: empty at start, gone at exit."""

    def reading_url(self, url: str) -> str:
        """The URL a read-only command opens: one that never creates the database."""

    def map_error(self, where: str, exc: BaseException) -> DatabaseError | None:
        """Our error for a driver error about the file, disk or lock; None for a bug."""

    # Plain-SQL reads (store.reader): statements in SQLite's words with `?` marks.

    def plain(self, raw: Any, sql: str, params: tuple[Any, ...], *, stream: bool) -> Any:
        """A cursor over `sql` run on the DB-API connection `raw` (`stream`: fetched a batch
        at a time, for reads as large as the lead table)."""

    def time_param(self, t: datetime) -> Any:
        """An aware datetime as a parameter compared with stored times (naive UTC)."""

    def json_text(self, column: str, key: str) -> str:
        """SQL of the value at `key` (a plain name) of the JSON object in `column`, as text."""

    def plain_reads(self, url: str) -> AbstractContextManager[Reader] | None:
        """A read transaction on the database at `url` through the DB-API module alone (no
        SQLAlchemy), when this database allows one and its schema is up to date; else None."""

    def ddl(self, sql: str) -> str:
        """A migration's statement (written in SQLite's words: INTEGER PRIMARY KEY, DATETIME,
        `?` marks) in this database's own."""

    def replace_unique(self, conn: Connection, table: str, old: str, new: str) -> None:
        """Replace `table`'s UNIQUE constraint `old` (as written, `UNIQUE (a, b)`) by `new`."""

    def insert_ignore(self, table: Table) -> Insert:
        """An INSERT that skips rows a unique constraint refuses."""

    def upsert(self, table: Table, key: str, values: dict[str, Any]) -> Any:
        """An INSERT of `values` that replaces the row with the same `key`."""

    def lock(self, conn: Connection, key: int) -> None:
        """Hold the lock named by `key` (a signed 64-bit number, `store.locks.key_of`) until the
        transaction on `conn` ends; another process's `lock` of the same key waits for it.
        Where a write transaction already holds the whole database (SQLite), nothing."""

    def claim_rows(self, query: Select[Any]) -> Select[Any]:
        """`query`, which reads rows about to be claimed, made to lock them and to skip rows
        another transaction has locked (PostgreSQL: FOR UPDATE SKIP LOCKED), so processes
        claiming at once take disjoint rows without waiting; unchanged where one writer at a
        time holds the whole database (SQLite)."""

    def send_lock(self, url: str) -> Lock | None:
        """The lock one `send` or daemon holds at a time (a file beside SQLite's); None where
        several send side by side (PostgreSQL: claims and limits hold them together) and for a
        database in memory."""

    def private_copy(self, url: str, folder: Path) -> str:
        """A copy of the database in `folder` (for `send --dry-run`); returns its URL."""

    # The planner's bulk reads, as plain tuples (100,000 rows through SQLAlchemy's row
    # machinery cost a second): JSON columns as their text, times as naive-UTC ISO text;
    # streamed (a cursor, read inside the caller's transaction), never all held at once.

    def unenrolled_lead_rows(
        self, r: Reader, campaign: str, columns: frozenset[str] | None = None
    ) -> Iterator[Any]:
        """(id, email, phone, first_name, last_name, timezone, status, tags, attrs) of the
        leads not enrolled in `campaign`; of the last six, only those in `columns` (None:
        all), the others NULL (`unenrolled_columns`)."""

    def pending_rows(self, r: Reader, state: str, campaigns: list[str]) -> Iterator[Any]:
        """(campaign, step, lead_id, due_at) of the messages in `state` of these campaigns."""

    # Audiences in SQL (store.audience_sql) and set-based enrolment (store.enrolment).

    def json_field(self, path: str) -> tuple[str, str]:
        """(value, type) SQL of the attribute at the JSON path bound as `path` (`:name`): the
        type as SQLite's json_type spells it (text, integer, real, true, false, null, array,
        object), NULL when absent."""

    def json_number(self, path: str) -> str:
        """SQL of the attribute at the JSON path bound as `path` as a number, for a value
        `json_field` says is integer, real, true (1) or false (0)."""

    def find_text(self, haystack: str, needle: str) -> str:
        """SQL of the 1-based position of `needle` in `haystack` (0: absent), as instr()."""

    def truth(self, condition: str) -> str:
        """A SQL condition as 1, 0 or NULL (SQLite's conditions are those numbers already)."""

    def json_unreliable(self) -> str:
        """SQL true for a lead whose tags or attributes the JSON functions above would misread
        (SQLite's cut a text at a NUL character), so that Python decides for it."""

    def has_tag(self, tag: str, quoted: str | None) -> str:
        """SQL true when the lead's tags hold the tag bound as `tag`; `quoted` (when given) is
        bound to its JSON text, for a quick test before the exact one."""

    def array_has(
        self, path: str, value: str, quoted: str | None = None, *, is_text: bool = True
    ) -> str:
        """SQL 1 when the attribute at the JSON path bound as `path` (an array) has an item
        equal to the value bound as `value` (nested arrays and objects never equal), else 0;
        `quoted` (when given) is bound to its JSON text, for a quick test before the exact one;
        `is_text`: the value is a text (else a number)."""

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
        """Note, in a scratch table, the leads not enrolled in `campaign` nor opted out of
        `channels` whose `verdict` SQL is 1 or NULL (NULL: Python decides), with it. `ids`:
        only those leads; `stopped_only`: only an enrolment that is not active keeps a lead out
        (a trigger campaign's active enrolment takes each new event)."""

    def unsure_rows(self, conn: Connection, after: int, limit: int) -> list[Any]:
        """(id, email, phone, first_name, last_name, timezone, status, tags, attrs) of up to
        `limit` picked leads after lead `after` whose verdict is NULL, by id; `tags` and `attrs`
        as JSON text."""

    def settle_picks(self, conn: Connection, verdicts: list[tuple[int, int]]) -> None:
        """Set (verdict, lead id) for the picks Python decided."""

    def settle_rest(self, conn: Connection) -> None:
        """The picks whose verdict is still NULL do not match (verdict 0)."""

    def picked_rows(self, conn: Connection) -> list[Any]:
        """(id, timezone, phone) of the picked leads that match, by id."""

    def enrol_picked(
        self, conn: Connection, campaign: str, now: datetime, message: dict[str, Any] | None
    ) -> int:
        """Enrol the picked leads that match in `campaign` and, when `message` (the first
        message's columns but `lead_id`) is given, add it for each; returns how many."""

    def enrol_picked_event(
        self, conn: Connection, campaign: str, now: datetime, message: dict[str, Any] | None
    ) -> int:
        """A trigger event's `enrol_picked`: an active enrolment is kept (not counted twice),
        a message is added for every match (`message` has `trigger_event`); returns how many
        leads it enrolled for this event."""

    def picked_timezones(self, conn: Connection) -> list[str]:
        """The distinct time zone names (not NULL) of the picked leads that match."""

    def picked_rows_outside(
        self, conn: Connection, timezones: list[str], after: int, limit: int
    ) -> list[Any]:
        """(id, timezone, phone) of up to `limit` matching picks after lead `after` whose
        timezone is NULL or none of `timezones`, by id."""

    def note_picked_dues(self, conn: Connection, dues: list[tuple[int, datetime]]) -> None:
        """Note (lead id, due time) for picks whose due time is their own (scratch table)."""

    def insert_picked_messages_due(
        self, conn: Connection, message: dict[str, Any], dues: dict[str, datetime]
    ) -> None:
        """Add `message` (its columns but `lead_id` and `due_at`) for each matching pick, in
        lead order, due at `dues[its timezone]`, else at the time `note_picked_dues` noted
        for it; a message already there is kept."""


def scheme_of(url: str) -> str:
    """`sqlite` for `sqlite:///x.db` and `sqlite+pysqlite:///x.db`."""
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else url.lower()


def _sqlite() -> Dialect:
    from campaignctl.store.sqlite import SQLiteDialect

    return SQLiteDialect()


def _postgres() -> Dialect:
    from campaignctl.store.postgres import PostgresDialect

    return PostgresDialect()


_DIALECTS: dict[str, Callable[[], Dialect]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
}


class PickReads:
    """The reads of enrolment's scratch table `enrol_pick` (see `Dialect.pick_leads`), in SQL
    both databases speak: each dialect inherits them."""

    def unsure_rows(self, conn: Connection, after: int, limit: int) -> list[Any]:
        from sqlalchemy import text

        return list(
            conn.execute(
                text(
                    "SELECT lead.id, lead.email, lead.phone, lead.first_name, lead.last_name, "
                    "lead.timezone, lead.status, CAST(lead.tags AS TEXT), "
                    "CAST(lead.attrs AS TEXT) FROM enrol_pick "
                    "JOIN lead ON lead.id = enrol_pick.lead_id "
                    "WHERE enrol_pick.verdict IS NULL AND enrol_pick.lead_id > :after "
                    "ORDER BY enrol_pick.lead_id LIMIT :limit"
                ),
                {"after": after, "limit": limit},
            ).fetchall()
        )

    def settle_rest(self, conn: Connection) -> None:
        conn.exec_driver_sql("UPDATE enrol_pick SET verdict = 0 WHERE verdict IS NULL")

    def picked_rows(self, conn: Connection) -> list[Any]:
        return list(
            conn.exec_driver_sql(
                "SELECT lead.id, lead.timezone, lead.phone FROM enrol_pick "
                "JOIN lead ON lead.id = enrol_pick.lead_id WHERE verdict = 1 ORDER BY lead.id"
            ).fetchall()
        )

    def picked_timezones(self, conn: Connection) -> list[str]:
        rows = conn.exec_driver_sql(
            "SELECT DISTINCT lead.timezone FROM enrol_pick JOIN lead ON lead.id = "
            "enrol_pick.lead_id WHERE verdict = 1 AND lead.timezone IS NOT NULL"
        )
        return [r[0] for r in rows]


class UnknownDialectError(CampaignctlError):
    """A database URL whose scheme no dialect handles."""


@cache
def _dialect(scheme: str) -> Dialect:
    make = _DIALECTS.get(scheme)
    if make is None:
        raise UnknownDialectError(
            f"{scheme!r} databases are not supported: campaignctl keeps its data in SQLite or "
            "PostgreSQL; give a file path such as 'campaignctl.db' or a postgresql:// URL",
            f"supported: {', '.join(sorted(_DIALECTS))}",
        )
    return make()


def dialect_for(url: str) -> Dialect:
    """The dialect for a database URL; an error listing the supported ones for another."""
    return _dialect(scheme_of(url))
