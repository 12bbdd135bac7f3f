"""Plain-SQL reads: the queries of the commands that only read, on any connection, without
SQLAlchemy.

A query function that reads takes a `Conn` or a `Reader` and calls `reader(conn)`. It then runs
the same statement on the connection `Store.reads()` yields (on a SQLite file, the sqlite3
module alone: `status` and `plan` never import SQLAlchemy, issue 15) and on the session of an
engine's transaction, whose DB-API connection it borrows. Each query is written once.

Statements are written in SQLite's words with `?` marks; the dialect turns them into its own
(`Dialect.plain`). Stored times come back as naive-UTC text from SQLite and as naive datetimes
from PostgreSQL: `Reader.time` makes either an aware datetime, and times given as parameters
are stored the way the tables store them (`Dialect.time_param`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaignctl.store.conn import Conn
    from campaignctl.store.dialect import Dialect


class Reader:
    """Plain SQL on the DB-API connection of one transaction (`raw`), in `dialect`'s words."""

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self.raw = raw
        self.dialect = dialect

    def rows(self, sql: str, *params: Any) -> Iterator[Any]:
        """The rows of `sql` as tuples. Read them inside the transaction."""
        return iter(self.dialect.plain(self.raw, sql, self._bound(params), stream=False))

    def stream(self, sql: str, *params: Any) -> Iterator[Any]:
        """The rows of `sql`, fetched a batch at a time (a server-side cursor where the database
        has them): for reads as large as the lead table. Read them inside the transaction."""
        return iter(self.dialect.plain(self.raw, sql, self._bound(params), stream=True))

    def first(self, sql: str, *params: Any) -> Any | None:
        """The first row of `sql`, or None."""
        return next(self.rows(sql, *params), None)

    def value(self, sql: str, *params: Any) -> Any:
        """The first column of the first row of `sql` (None when there is no row)."""
        row = self.first(sql, *params)
        return None if row is None else row[0]

    @staticmethod
    def time(value: str | datetime) -> datetime:
        """A stored time (naive UTC, as text or a datetime) as an aware datetime."""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)

    @classmethod
    def time_or_none(cls, value: str | datetime | None) -> datetime | None:
        """`time`, for a column that may be NULL."""
        return None if value is None else cls.time(value)

    def _bound(self, params: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(self.dialect.time_param(p) if isinstance(p, datetime) else p for p in params)


def reader(conn: Conn | Reader) -> Reader:
    """A Reader on `conn`: itself, or the DB-API connection under a session or Core connection
    (the same transaction)."""
    if isinstance(conn, Reader):
        return conn
    from campaignctl.store.conn import connection, dialect_of

    core = connection(conn)
    return Reader(core.connection.driver_connection, dialect_of(core))


def marks(values: Sequence[Any]) -> str:
    """`(?, ?, ?)`: an IN list of as many marks as `values` (`(NULL)` for none, which matches
    nothing on every database)."""
    return f"({', '.join('?' * len(values))})" if values else "(NULL)"


def stamp(t: datetime) -> str:
    """An aware datetime as the tables store it on SQLite: naive-UTC text, in the format
    SQLAlchemy's DateTime writes (so text order is time order)."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
