"""Append-only named migrations, recorded in `schema_migration`.

Never edit or reorder a migration that has shipped: add one. Each is a function of a
connection; `migrate` applies the ones a database has not seen, in one write transaction.

Migrations are written in SQLite's words (INTEGER PRIMARY KEY, DATETIME, `?` marks, plain
VARCHAR/INTEGER/TEXT/JSON columns): on another database, `migrate` hands each one a connection
whose `exec_driver_sql` translates them through `Dialect.ddl` (PostgreSQL's in
`store.postgres`), so a migration is written once and means the same on both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from campaignctl.errors import CampaignctlError
from campaignctl.store.states import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

    from campaignctl.store.dialect import Dialect


Migration = Callable[["Connection"], None]
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


@migration
def m003_message_reason_code(conn: Connection) -> None:
    # why a message was skipped or deferred, as a word (`engine.decide.Why`) beside `reason`
    conn.exec_driver_sql("ALTER TABLE message ADD COLUMN reason_code VARCHAR")


@migration
def m004_message_content(conn: Connection) -> None:
    # what was handed to the channel, recorded at claim time: reconcile and threading read it
    # instead of rendering again (a template edited after a crash must not resend)
    _ddl(
        conn,
        """
        ALTER TABLE message ADD COLUMN subject VARCHAR;
        ALTER TABLE message ADD COLUMN body TEXT;
        ALTER TABLE message ADD COLUMN content_sid VARCHAR
        """,
    )


@migration
def m005_journal(conn: Connection) -> None:
    # the append-only decision log (store.journal); read by lead, in time order
    _ddl(
        conn,
        """
        CREATE TABLE journal (
            id INTEGER PRIMARY KEY,
            at DATETIME NOT NULL,
            kind VARCHAR NOT NULL,
            lead_id INTEGER,
            campaign VARCHAR,
            step VARCHAR,
            message_id INTEGER,
            channel VARCHAR,
            code VARCHAR,
            source VARCHAR,
            detail JSON NOT NULL DEFAULT '{}'
        );
        CREATE INDEX ix_journal_lead_at ON journal (lead_id, at)
        """,
    )


@migration
def m006_suppression(conn: Connection) -> None:
    # do-not-contact addresses, as keyed hashes (HMAC-SHA256 under the key in meta
    # `suppression.key`): `suppress import` and `leads delete` add them; the claim reads them
    _ddl(
        conn,
        """
        CREATE TABLE suppression (
            id INTEGER PRIMARY KEY,
            hash VARCHAR NOT NULL,
            channel VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            note VARCHAR,
            created_at DATETIME NOT NULL,
            UNIQUE (hash, channel)
        )
        """,
    )


@migration
def m007_audience_values(conn: Connection) -> None:
    # issue 11: tags lower-case and each once, attribute values that look numeric as numbers
    # (campaignctl.values), so audiences compare them as the import now stores them
    import json

    from campaignctl.values import attr_value, normal_tags

    last = 0
    while True:  # in batches of ids, so memory stays flat however many leads there are
        rows = conn.exec_driver_sql(
            "SELECT id, tags, attrs FROM lead WHERE id > ? ORDER BY id LIMIT 5000", (last,)
        ).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        changed = []
        for lead_id, tags_text, attrs_text in rows:
            tags = json.loads(tags_text or "[]")
            attrs = json.loads(attrs_text or "{}")
            new_tags = normal_tags(tags) if isinstance(tags, list) else tags
            new_attrs = (
                {k: attr_value(v) for k, v in attrs.items()} if isinstance(attrs, dict) else attrs
            )
            if new_tags != tags or new_attrs != attrs:
                changed.append(
                    {
                        "id": lead_id,
                        "tags": json.dumps(new_tags, ensure_ascii=False, separators=(",", ":")),
                        "attrs": json.dumps(new_attrs, ensure_ascii=False, separators=(",", ":")),
                    }
                )
        if changed:
            from sqlalchemy import text

            conn.execute(
                text("UPDATE lead SET tags = :tags, attrs = :attrs WHERE id = :id"), changed
            )


@migration
def m010_lead_email_lower(conn: Connection) -> None:
    # leads are found by email in any case (`lower(email) = ?`: sync's replies, `leads optout`,
    # `explain`); without this index each lookup read every lead
    conn.exec_driver_sql("CREATE INDEX ix_lead_email_lower ON lead (lower(email))")


@migration
def m012_test_send(conn: Connection) -> None:
    # `send --test-to` messages: the channel's limits count them, no lead's progress does
    _ddl(
        conn,
        """
        CREATE TABLE test_send (
            id INTEGER PRIMARY KEY,
            campaign VARCHAR NOT NULL,
            step VARCHAR NOT NULL,
            channel VARCHAR NOT NULL,
            state VARCHAR NOT NULL,
            claimed_at DATETIME NOT NULL,
            sent_at DATETIME,
            provider_id VARCHAR
        );
        CREATE INDEX ix_test_send_channel ON test_send (channel, claimed_at)
        """,
    )


@migration
def m013_message_attachments(conn: Connection) -> None:
    # which files a claim attached ([{"file": ..., "size": ...}], never the bytes), for
    # reconcile and explain
    conn.exec_driver_sql("ALTER TABLE message ADD COLUMN attachments JSON")


@migration
def m014_ab_decision(conn: Connection) -> None:
    # A/B tests: when each step's test started (its decision is due `wait` later), and the
    # decision, one row per step: written INSERT-or-ignore, so two processes never decide twice
    _ddl(
        conn,
        """
        CREATE TABLE ab_test (
            id INTEGER PRIMARY KEY,
            campaign VARCHAR NOT NULL,
            step VARCHAR NOT NULL,
            started_at DATETIME NOT NULL,
            CONSTRAINT uq_ab_test UNIQUE (campaign, step)
        );
        CREATE TABLE ab_decision (
            id INTEGER PRIMARY KEY,
            campaign VARCHAR NOT NULL,
            step VARCHAR NOT NULL,
            decided_at DATETIME NOT NULL,
            winner VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            rule VARCHAR NOT NULL,
            reason VARCHAR NOT NULL,
            z FLOAT,
            p_value FLOAT,
            confidence FLOAT NOT NULL,
            figures JSON NOT NULL,
            CONSTRAINT uq_ab_decision UNIQUE (campaign, step)
        )
        """,
    )


def _rebuild_unique(conn: Connection, table: str, old: str, new: str) -> None:
    """Replace `table`'s UNIQUE constraint `old` by `new` (SQLite cannot alter one): the table
    is copied as it stands (every column later migrations added), then its indexes recreated.

    Foreign keys stay on (a migration runs in a transaction, where they cannot be turned off):
    the columns of other tables that refer to `table` (`event.message_id`) are set aside and
    cleared while the old table is dropped, then restored. Another database alters the
    constraint in place (`Dialect.replace_unique`)."""
    if conn.dialect.name != "sqlite":
        from campaignctl.store.dialect import dialect_for

        dialect_for(conn.dialect.name).replace_unique(conn, table, old, new)
        return
    sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    if old not in sql:  # pragma: no cover - a shipped table's guard
        raise RuntimeError(f"{table}: no {old} to replace")
    indexes = [
        r[0]
        for r in conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        )
    ]
    children = [
        (name, fk[3])
        for (name,) in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != ?", (table,)
        ).fetchall()
        for fk in conn.exec_driver_sql(f'PRAGMA foreign_key_list("{name}")').fetchall()
        if fk[2] == table
    ]
    for i, (name, col) in enumerate(children):  # set aside in SQL: memory stays flat
        conn.exec_driver_sql(
            f'CREATE TEMP TABLE rebuild_keep{i} AS SELECT rowid AS rid, "{col}" AS v '
            f'FROM "{name}" WHERE "{col}" IS NOT NULL'
        )
        conn.exec_driver_sql(f'UPDATE "{name}" SET "{col}" = NULL WHERE "{col}" IS NOT NULL')
    created = sql.replace(old, new).replace(f"CREATE TABLE {table}", f"CREATE TABLE {table}_new", 1)
    conn.exec_driver_sql(created)
    conn.exec_driver_sql(f"INSERT INTO {table}_new SELECT * FROM {table}")
    conn.exec_driver_sql(f"DROP TABLE {table}")
    conn.exec_driver_sql(f"ALTER TABLE {table}_new RENAME TO {table}")
    for index in indexes:
        conn.exec_driver_sql(index)
    for i, (name, col) in enumerate(children):
        keep = f"temp.rebuild_keep{i}"
        conn.exec_driver_sql(
            f'UPDATE "{name}" SET "{col}" = (SELECT v FROM {keep} WHERE rid = "{name}".rowid) '
            f"WHERE rowid IN (SELECT rid FROM {keep})"
        )
        conn.exec_driver_sql(f"DROP TABLE {keep}")


@migration
def m016_trigger_event(conn: Connection) -> None:
    # issue 12: `campaignctl trigger` records each event once per campaign (the unique row is
    # the guard: the same event id never enrols anyone twice); a trigger campaign's messages
    # carry the event's row id (0 for every other message), and the message key includes it,
    # so a lead gets one message per step per event
    _ddl(
        conn,
        """
        CREATE TABLE trigger_event (
            id INTEGER PRIMARY KEY,
            campaign VARCHAR NOT NULL,
            event_id VARCHAR NOT NULL,
            data JSON NOT NULL,
            received_at DATETIME NOT NULL,
            enrolled INTEGER NOT NULL DEFAULT 0,
            UNIQUE (campaign, event_id)
        );
        ALTER TABLE message ADD COLUMN trigger_event INTEGER NOT NULL DEFAULT 0
        """,
    )
    _rebuild_unique(
        conn,
        "message",
        "UNIQUE (campaign, step, lead_id)",
        "UNIQUE (campaign, step, lead_id, trigger_event)",
    )


@migration
def m017_event_message_index(conn: Connection) -> None:
    # the events of one message (A/B figures, delivery statuses): without it, each sent
    # message's look-up read every event
    conn.exec_driver_sql("CREATE INDEX ix_event_message_kind ON event (message_id, kind)")


@migration
def m020_message_report_index(conn: Connection) -> None:
    # issue 14: `report` counts a campaign's messages per state, step, variant and channel in
    # this order (one pass, no sort), and its sends per day as ranges of sent_at in each of
    # those groups, without reading the table
    conn.exec_driver_sql(
        "CREATE INDEX ix_message_report "
        "ON message (campaign, state, step, variant, channel, sent_at)"
    )


@migration
def m026_worker(conn: Connection) -> None:
    # issue 16: each `send` and daemon process registers as a worker and beats while it runs;
    # a live worker recovers the claims of one whose heartbeat is older than
    # `engine.recovery.WORKER_TIMEOUT` (`id` is what the worker writes in `message.claimed_by`)
    _ddl(
        conn,
        """
        CREATE TABLE worker (
            id VARCHAR PRIMARY KEY,
            host VARCHAR NOT NULL,
            pid INTEGER NOT NULL,
            started_at DATETIME NOT NULL,
            heartbeat_at DATETIME NOT NULL
        );
        CREATE INDEX ix_worker_heartbeat_at ON worker (heartbeat_at)
        """,
    )


@migration
def m031_message_provider_index(conn: Connection) -> None:
    # a Twilio status callback names its message by sid: without it, each callback read every
    # message
    conn.exec_driver_sql("CREATE INDEX ix_message_provider_id ON message (provider_id)")


@migration
def m033_hooks(conn: Connection) -> None:
    # outgoing hooks: a durable queue, and which events have been queued for them (events
    # recorded before this migration are not announced)
    _ddl(
        conn,
        """
        CREATE TABLE hook_delivery (
            id INTEGER PRIMARY KEY,
            hook VARCHAR NOT NULL,
            event VARCHAR NOT NULL,
            idem_key VARCHAR NOT NULL,
            lead_id INTEGER NOT NULL,
            message_id INTEGER,
            event_id INTEGER,
            occurred_at DATETIME NOT NULL,
            created_at DATETIME NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DATETIME NOT NULL,
            lease_until DATETIME,
            delivered_at DATETIME,
            last_error VARCHAR,
            UNIQUE (hook, idem_key)
        );
        CREATE INDEX ix_hook_delivery_pending ON hook_delivery (hook, lead_id, id)
            WHERE delivered_at IS NULL;
        CREATE INDEX ix_hook_delivery_lead_id ON hook_delivery (lead_id);
        ALTER TABLE event ADD COLUMN hooked INTEGER NOT NULL DEFAULT 0;
        UPDATE event SET hooked = 1;
        CREATE INDEX ix_event_unhooked ON event (id) WHERE hooked = 0
        """,
    )


@migration
def m035_enrolment_state_index(conn: Connection) -> None:
    # `status` counts each campaign's enrolments by state: through this index alone, rather
    # than one row look-up per enrolment (1.3 s at 1,000,000 leads)
    conn.exec_driver_sql("CREATE INDEX ix_enrolment_campaign_state ON enrolment (campaign, state)")


@migration
def m036_early_callback(conn: Connection) -> None:
    # Twilio status callbacks that arrive before their message's sid is recorded, kept until
    # it is (`inbound.settle_early`); looked up by sid through the unique key
    _ddl(
        conn,
        """
        CREATE TABLE early_callback (
            id INTEGER PRIMARY KEY,
            channel VARCHAR NOT NULL,
            provider_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            resource JSON NOT NULL,
            received_at DATETIME NOT NULL,
            UNIQUE (provider_id, status)
        )
        """,
    )


class _Translated:
    """A connection whose `exec_driver_sql` speaks the database's dialect: what a migration
    receives on a database other than SQLite. Everything else is the connection's own."""

    def __init__(self, conn: Connection, dialect: Dialect) -> None:
        self._conn = conn
        self._dialect = dialect

    def exec_driver_sql(self, sql: str, params: Any = None) -> Any:
        sql = self._dialect.ddl(sql)
        if params is None:
            return self._conn.exec_driver_sql(sql)
        return self._conn.exec_driver_sql(sql.replace("%", "%%").replace("?", "%s"), params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def migrate(engine: Engine, dialect: Dialect) -> list[str]:
    """Apply the migrations this database has not seen; returns their names."""
    from sqlalchemy import text

    applied: list[str] = []
    with engine.connect() as raw:
        dialect.for_writing(raw)
        conn = raw if dialect.name == "sqlite" else cast("Connection", _Translated(raw, dialect))
        with raw.begin():
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
