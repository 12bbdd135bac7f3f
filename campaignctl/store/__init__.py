"""The database: every table, query and dialect-specific statement of campaignctl lives here.

- `store.schema`: the tables and message states; `store.fields`: the lead's fields, spelled once.
- `store.migrations`: append-only named migrations.
- `store.messages`, `store.leads`, `store.events`, `store.meta`: named queries by subject; the
  rest of campaignctl calls these and never builds SQL (tests/test_architecture.py holds this).
- `store.dialect`: the `Dialect` interface and its factory; `store.sqlite`: SQLite's;
  `store.postgres`: PostgreSQL's.

SQLite runs in WAL mode with a busy timeout; every write goes through `Store.write()`, which
opens the transaction with `BEGIN IMMEDIATE` (on PostgreSQL, a transaction-level advisory lock)
so that two processes never interleave a read-then-write; `Store.write(shared=True)` (the
engine's claims and records) does without it on PostgreSQL, relying on its own row and named
locks (`store.locks`).

The table classes are re-exported lazily: importing `campaignctl.store.sqlite` (the leads
import's lean process) loads no SQLAlchemy.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaignctl.errors import CampaignctlError
from campaignctl.store.dialect import Dialect, dialect_for
from campaignctl.store.errors import DatabaseBusyError, DatabaseError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection
    from sqlmodel import Session

    from campaignctl.locking import Lock
    from campaignctl.store.leads import lead_context as lead_context
    from campaignctl.store.migrations import MIGRATIONS as MIGRATIONS
    from campaignctl.store.reader import Reader
    from campaignctl.store.schema import Enrolment as Enrolment
    from campaignctl.store.schema import Event as Event
    from campaignctl.store.schema import Lead as Lead
    from campaignctl.store.schema import Message as Message
    from campaignctl.store.schema import Meta as Meta
    from campaignctl.store.schema import OptOut as OptOut
    from campaignctl.store.states import FAILED as FAILED
    from campaignctl.store.states import MESSAGE_STATES as MESSAGE_STATES
    from campaignctl.store.states import PENDING as PENDING
    from campaignctl.store.states import SENDING as SENDING
    from campaignctl.store.states import SENT as SENT
    from campaignctl.store.states import SKIPPED as SKIPPED
    from campaignctl.store.states import UNCERTAIN as UNCERTAIN
    from campaignctl.store.states import utcnow as utcnow

__all__ = [
    "FAILED",
    "MESSAGE_STATES",
    "MIGRATIONS",
    "PENDING",
    "SENDING",
    "SENT",
    "SKIPPED",
    "UNCERTAIN",
    "DatabaseBusyError",
    "DatabaseError",
    "Dialect",
    "Enrolment",
    "Event",
    "Lead",
    "Message",
    "Meta",
    "OptOut",
    "Store",
    "dialect_for",
    "lead_context",
    "utcnow",
]

_LAZY = {
    "MIGRATIONS": "campaignctl.store.migrations",
    "lead_context": "campaignctl.store.leads",
    **dict.fromkeys(
        (
            "FAILED",
            "MESSAGE_STATES",
            "PENDING",
            "SENDING",
            "SENT",
            "SKIPPED",
            "UNCERTAIN",
            "utcnow",
        ),
        "campaignctl.store.states",
    ),
    **dict.fromkeys(
        ("Enrolment", "Event", "Lead", "Meta", "Message", "OptOut"), "campaignctl.store.schema"
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class Store:
    """One database: lead store, message ledger and shared limits for every process using it."""

    def __init__(self, url: str, *, migrate_now: bool = True, lazy: bool = False) -> None:
        """`lazy`: open the engine (and migrate) at its first use, not now: a Store that only
        `reads()` an up-to-date SQLite file never loads SQLAlchemy."""
        self.url = url
        self.dialect: Dialect = dialect_for(url)
        self.dialect.check(url)
        self._engine: Engine | None = None
        self._migrate = migrate_now
        if not lazy:
            self._open()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, opened (and the database migrated) at the first use."""
        return self._engine if self._engine is not None else self._open()

    def _open(self) -> Engine:
        self._engine = engine = self.dialect.create_engine(self.url)
        if self._migrate:
            from campaignctl.store.migrations import migrate

            try:
                with self._errors_mapped():
                    migrate(engine, self.dialect)
            except CampaignctlError:
                raise
            except Exception as exc:  # a corrupt or foreign file
                reason = (str(getattr(exc, "orig", exc)).splitlines() or ["unknown error"])[0]
                raise DatabaseError(f"{self.where}: cannot open the database: {reason}") from None
        return engine

    @classmethod
    def for_config(cls, cfg: Any) -> Store:
        """The store named by a loaded campaign file's `settings.database`."""
        return cls(cfg.database_url())

    @classmethod
    def for_reading(cls, cfg: Any, *, lazy: bool = True) -> Store:
        """The store for a command that only reads (`status`, `plan`, `leads list`, a dry run):
        one that never creates the database (for SQLite, an empty one in memory). `lazy`: the
        engine is opened (and the database migrated) at its first use, which `reads()` on an
        up-to-date SQLite file never makes; a caller that reads the database by other means
        (the leads import's dry run) wants it migrated now."""
        url = cfg.database_url()
        return cls(dialect_for(url).reading_url(url), lazy=lazy)

    @classmethod
    def existing(cls, url: str, *, migrate_now: bool = True, lazy: bool = False) -> Store | None:
        """The database at `url` when it already exists (None otherwise); never creates one.
        `lazy`: as for `Store`."""
        if not dialect_for(url).exists(url):
            return None
        return cls(url, migrate_now=migrate_now, lazy=lazy)

    @property
    def in_memory(self) -> bool:
        """A database in memory: empty at start, gone at exit."""
        return self.dialect.in_memory(self.url)

    @property
    def path(self) -> Path | None:
        """The database file, used to place lock files beside it; None for other databases."""
        return self.dialect.path(self.url)

    @property
    def where(self) -> str:
        """The database as errors name it: its file, else its URL."""
        return self.dialect.where(self.url)

    def send_lock(self) -> Lock | None:
        """The lock one `send` or daemon holds at a time (beside a SQLite file); None on
        PostgreSQL, where they run side by side (docs/scaling.md)."""
        return self.dialect.send_lock(self.url)

    def private_copy(self, folder: Path) -> Store:
        """A copy of this database in `folder`, for `send --dry-run` (migrated first, so that
        a lazy reading store's copy has the current schema)."""
        if self._engine is None:
            self._open()
        return Store(self.dialect.private_copy(self.url, folder))

    @contextmanager
    def _errors_mapped(self) -> Iterator[None]:
        """The driver's errors about the file, the disk or a lock as a DatabaseError (see
        `Dialect.map_error`); anything else propagates unchanged."""
        from sqlalchemy.exc import DBAPIError

        try:
            yield
        except DBAPIError as exc:
            mapped = self.dialect.map_error(self.where, exc)
            if mapped is None:
                raise
            raise mapped from None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (deferred transaction)."""
        from sqlmodel import Session

        with self._errors_mapped(), Session(self.engine) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A Core connection for reads (deferred transaction), without SQLModel's session: what
        the commands that only read use, so they never import SQLAlchemy's ORM. Query functions
        take it as they take a session."""
        with self._errors_mapped(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def reads(self) -> Iterator[Reader]:
        """Plain-SQL reads in one transaction (`store.reader`): on an up-to-date SQLite file,
        through the sqlite3 module alone, so that `status` and `plan` load no SQLAlchemy;
        elsewhere (a database to migrate, PostgreSQL), on a connection of the engine."""
        plain = self.dialect.plain_reads(self.url) if self._engine is None else None
        if plain is not None:
            with plain as r:
                yield r
            return
        from campaignctl.store.reader import reader

        with self.reading() as conn:
            yield reader(conn)

    @contextmanager
    def write(self, *, shared: bool = False) -> Iterator[Session]:
        """A session whose transaction takes the write lock at its start and commits on exit.

        `shared`: a transaction that runs beside other processes' writes where the database
        allows it (PostgreSQL), relying on the row locks and named locks (`store.locks`) it
        takes itself: the engine's claims and records, so daemons on several hosts send side
        by side. On SQLite it is the same write lock."""
        from sqlmodel import Session

        with self._errors_mapped(), self.engine.connect() as conn:
            if shared:
                self.dialect.for_sharing(conn)
            else:
                self.dialect.for_writing(conn)
            with Session(bind=conn) as session:
                session.connection()  # BEGIN IMMEDIATE now, not at the first statement
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
