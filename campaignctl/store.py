"""The database: SQLModel tables, the engine, write transactions and append-only migrations.

SQLite runs in WAL mode with a busy timeout; every write goes through `Store.write()`, which
opens the transaction with `BEGIN IMMEDIATE` so that two processes never interleave a
read-then-write. The schema is created by named migrations recorded in `schema_migration`;
the SQLModel classes below describe the same tables (a test holds the two together).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, UniqueConstraint, create_engine, event, text
from sqlalchemy.engine import Connection, Row
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel

from campaignctl.database_errors import DatabaseError, database_error
from campaignctl.errors import CampaignctlError


def utcnow() -> datetime:
    """The wall clock, aware and in UTC. Core code takes `now` as a parameter instead."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in and out; stored naive in UTC, so text order is time order."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------- tables

# Message states. `sending` is claimed and handed to a provider; `uncertain` is a `sending` whose
# process died, waiting for the channel to say whether it went out.
PENDING, SENDING, SENT, FAILED, SKIPPED, UNCERTAIN = (
    "pending",
    "sending",
    "sent",
    "failed",
    "skipped",
    "uncertain",
)
MESSAGE_STATES = (PENDING, SENDING, SENT, FAILED, SKIPPED, UNCERTAIN)


class Lead(SQLModel, table=True):
    __tablename__ = "lead"
    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, unique=True)
    phone: str | None = Field(default=None, unique=True)
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    status: str = "new"
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    attrs: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OptOut(SQLModel, table=True):
    """A lead who must not be messaged on `channel` again (`*` means every channel)."""

    __tablename__ = "optout"
    __table_args__ = (UniqueConstraint("lead_id", "channel"),)
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    channel: str
    source: str = "manual"  # manual | keyword | bounce | unsubscribe | provider
    detail: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Enrolment(SQLModel, table=True):
    """A lead in a campaign; `state` is active, completed or stopped (with `reason`)."""

    __tablename__ = "enrolment"
    __table_args__ = (UniqueConstraint("campaign", "lead_id"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign: str
    lead_id: int = Field(foreign_key="lead.id", index=True)
    state: str = "active"
    reason: str | None = None
    enrolled_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Message(SQLModel, table=True):
    """One (campaign, step, lead): the unique key is what makes a message go at most once."""

    __tablename__ = "message"
    __table_args__ = (UniqueConstraint("campaign", "step", "lead_id"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign: str
    step: str
    step_index: int
    lead_id: int = Field(foreign_key="lead.id", index=True)
    channel: str
    variant: str | None = None
    state: str = PENDING
    due_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0
    claimed_by: str | None = None
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    recipient: str | None = None
    provider_id: str | None = None
    message_id: str | None = None  # RFC 5322 Message-ID for email, generated before sending
    thread_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    reason: str | None = None  # why skipped / why waiting
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # when it was first claimed: transient errors fail it only `give_up_after` later
    first_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Event(SQLModel, table=True):
    """Something that came back: reply, optout, optin, bounce, delivered, undelivered, help."""

    __tablename__ = "event"
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int | None = Field(default=None, foreign_key="lead.id", index=True)
    message_id: int | None = Field(default=None, foreign_key="message.id")
    channel: str | None = None
    kind: str
    source_id: str | None = Field(default=None, unique=True)  # provider's id, so sync is idempotent
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Meta(SQLModel, table=True):
    """Small key/value state: sync cursors, daemon heartbeat."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# ---------------------------------------------------------------- migrations

Migration = Callable[[Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register a migration. Append only: never edit or reorder one that has shipped."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def _ddl(conn: Connection, script: str) -> None:
    for stmt in filter(None, (s.strip() for s in script.split(";"))):
        conn.exec_driver_sql(stmt)


@migration
def m001_initial(conn: Connection) -> None:
    _ddl(
        conn,
        """
    CREATE TABLE lead (
        id INTEGER PRIMARY KEY,
        email VARCHAR UNIQUE,
        phone VARCHAR UNIQUE,
        first_name VARCHAR,
        last_name VARCHAR,
        timezone VARCHAR,
        status VARCHAR NOT NULL DEFAULT 'new',
        tags JSON NOT NULL DEFAULT '[]',
        attrs JSON NOT NULL DEFAULT '{}',
        created_at DATETIME NOT NULL,
        updated_at DATETIME NOT NULL
    );
    CREATE TABLE optout (
        id INTEGER PRIMARY KEY,
        lead_id INTEGER NOT NULL REFERENCES lead(id),
        channel VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        detail VARCHAR,
        created_at DATETIME NOT NULL,
        UNIQUE (lead_id, channel)
    );
    CREATE INDEX ix_optout_lead_id ON optout (lead_id);
    CREATE TABLE enrolment (
        id INTEGER PRIMARY KEY,
        campaign VARCHAR NOT NULL,
        lead_id INTEGER NOT NULL REFERENCES lead(id),
        state VARCHAR NOT NULL,
        reason VARCHAR,
        enrolled_at DATETIME NOT NULL,
        updated_at DATETIME NOT NULL,
        UNIQUE (campaign, lead_id)
    );
    CREATE INDEX ix_enrolment_lead_id ON enrolment (lead_id);
    CREATE TABLE message (
        id INTEGER PRIMARY KEY,
        campaign VARCHAR NOT NULL,
        step VARCHAR NOT NULL,
        step_index INTEGER NOT NULL,
        lead_id INTEGER NOT NULL REFERENCES lead(id),
        channel VARCHAR NOT NULL,
        variant VARCHAR,
        state VARCHAR NOT NULL,
        due_at DATETIME NOT NULL,
        attempts INTEGER NOT NULL,
        claimed_by VARCHAR,
        claimed_at DATETIME,
        sent_at DATETIME,
        recipient VARCHAR,
        provider_id VARCHAR,
        message_id VARCHAR,
        thread_id VARCHAR,
        error_code VARCHAR,
        error VARCHAR,
        reason VARCHAR,
        updated_at DATETIME NOT NULL,
        UNIQUE (campaign, step, lead_id)
    );
    CREATE INDEX ix_message_lead_id ON message (lead_id);
    CREATE INDEX ix_message_state_due ON message (state, due_at);
    CREATE INDEX ix_message_channel_sent ON message (channel, sent_at);
    CREATE TABLE event (
        id INTEGER PRIMARY KEY,
        lead_id INTEGER REFERENCES lead(id),
        message_id INTEGER REFERENCES message(id),
        channel VARCHAR,
        kind VARCHAR NOT NULL,
        source_id VARCHAR UNIQUE,
        detail JSON NOT NULL DEFAULT '{}',
        occurred_at DATETIME NOT NULL,
        recorded_at DATETIME NOT NULL
    );
    CREATE INDEX ix_event_lead_id ON event (lead_id);
    CREATE TABLE meta (
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL,
        updated_at DATETIME NOT NULL
    )
    """,
    )


@migration
def m002_message_first_attempt(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE message ADD COLUMN first_attempt_at DATETIME")


def migrate(engine: Engine) -> list[str]:
    """Apply the migrations this database has not seen; returns their names."""
    applied: list[str] = []
    with engine.connect() as conn:
        conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            conn.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS schema_migration "
                "(name VARCHAR PRIMARY KEY, applied_at DATETIME NOT NULL)"
            )
            done = {r[0] for r in conn.exec_driver_sql("SELECT name FROM schema_migration")}
            known = {name for name, _ in MIGRATIONS}
            unknown = done - known
            if unknown:
                raise CampaignctlError(
                    f"{engine.url.database}: made by a newer campaignctl "
                    f"(unknown migrations: {', '.join(sorted(unknown))})",
                    "upgrade campaignctl: pip install -U campaignctl",
                )
            for name, fn in MIGRATIONS:
                if name in done:
                    continue
                fn(conn)
                conn.execute(
                    text("INSERT INTO schema_migration (name, applied_at) VALUES (:n, :t)"),
                    {"n": name, "t": utcnow().replace(tzinfo=None)},
                )
                applied.append(name)
    return applied


# ---------------------------------------------------------------- engine and sessions


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN, so writers can ask for BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Store:
    """One database: lead store, message ledger and shared limits for every process using it."""

    def __init__(self, url: str, *, migrate_now: bool = True) -> None:
        self.url = url
        is_sqlite = url.startswith("sqlite")
        if is_sqlite:
            db = url.split(":///", 1)[-1]
            if db and db != ":memory:" and not Path(db).parent.is_dir():
                raise CampaignctlError(
                    f"{db}: the database's folder does not exist",
                    "create the folder, or set settings.database in the campaign file",
                )
        self.engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False} if is_sqlite else {}
        )
        if is_sqlite:
            _sqlite_setup(self.engine)
        if migrate_now:
            try:
                with self._errors_mapped():
                    migrate(self.engine)
            except CampaignctlError:
                raise
            except Exception as exc:  # a corrupt or foreign file
                reason = str(getattr(exc, "orig", exc)).splitlines()[0]
                raise DatabaseError(f"{self.where}: cannot open the database: {reason}") from None

    @classmethod
    def for_config(cls, cfg: Any) -> Store:
        """The store named by a loaded campaign file's `settings.database`."""
        return cls(cfg.database_url())

    @classmethod
    def for_reading(cls, cfg: Any) -> Store:
        """The store for a command that only reads (`status`, `plan`, `leads list`, a dry run):
        when the SQLite file does not exist yet, an empty database in memory, so that reading
        never creates the file; only commands that write do."""
        url = cfg.database_url()
        if url.startswith("sqlite"):
            db = url.split(":///", 1)[-1]
            if db and db != ":memory:" and not Path(db).exists():
                return cls("sqlite:///:memory:")
        return cls(url)

    @property
    def in_memory(self) -> bool:
        """An SQLite database in memory: empty at start, gone at exit."""
        return self.url.startswith("sqlite") and self.url.split(":///", 1)[-1] in ("", ":memory:")

    @property
    def path(self) -> Path | None:
        """The SQLite file, used to place lock files beside it; None for other databases."""
        if not self.url.startswith("sqlite"):
            return None
        db = self.url.split(":///", 1)[-1]
        return Path(db) if db and db != ":memory:" else None

    @property
    def where(self) -> str:
        """The database as errors name it: its file, else its URL."""
        path = self.path
        return str(path) if path is not None else self.url

    @contextmanager
    def _errors_mapped(self) -> Iterator[None]:
        """SQLite's errors about the file, the disk or a lock as a DatabaseError (see
        `database_error`); anything else propagates unchanged."""
        from sqlalchemy.exc import DBAPIError

        try:
            yield
        except DBAPIError as exc:
            mapped = database_error(self.where, exc)
            if mapped is None:
                raise
            raise mapped from None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (deferred transaction)."""
        with self._errors_mapped(), Session(self.engine) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction starts with BEGIN IMMEDIATE and commits on exit."""
        with self._errors_mapped(), self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            with Session(bind=conn) as session:
                session.connection()  # BEGIN IMMEDIATE now, not at the first statement
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise

    def close(self) -> None:
        self.engine.dispose()


def lead_context(lead: Lead | Row[Any]) -> dict[str, Any]:
    """The lead as templates and audience expressions see it (a Lead, or a row of its columns)."""
    from campaignctl.audience import lead_context as build

    return build(
        id=lead.id,
        email=lead.email,
        phone=lead.phone,
        first_name=lead.first_name,
        last_name=lead.last_name,
        timezone=lead.timezone,
        status=lead.status,
        tags=lead.tags or [],
        attrs=lead.attrs or {},
    )
