"""What query functions receive: the session a `Store.read()` or `Store.write()` yields, or its
connection. Callers group several calls in one transaction by passing the same one; they never
build SQL with it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeAlias

from campaignctl.store.dialect import Dialect, scheme_of
from campaignctl.store.dialect import _dialect as dialect_named

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlmodel import Session

    from campaignctl.store.reader import Reader

Conn: TypeAlias = "Session | Connection"
#: What a query that only reads takes: a `Conn`, or the `Reader` of `Store.reads()`.
Readable: TypeAlias = "Session | Connection | Reader"
#: The session a `Store.read()` or `Store.write()` yields, for modules outside the store that
#: pass it on to store functions (they never build SQL with it).
Transaction: TypeAlias = "Session"


def connection(conn: Conn) -> Connection:
    """The Core connection under a session (or the connection itself)."""
    from sqlalchemy.engine import Connection

    return conn if isinstance(conn, Connection) else conn.connection()


def dialect_of(conn: Conn) -> Dialect:
    """The dialect of the database `conn` talks to."""
    return dialect_named(scheme_of(connection(conn).dialect.name))


def savepoint(session: Transaction) -> AbstractContextManager[object]:
    """A savepoint in `session`'s transaction: what runs inside it is undone alone when it
    raises, and the transaction goes on (the web side's group commit)."""
    return session.begin_nested()
