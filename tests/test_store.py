import sqlite3
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel, select

from campaignctl.store import MIGRATIONS, Lead, Store


def test_migrations_are_recorded_and_not_rerun(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    Store(url).close()
    con = sqlite3.connect(tmp_path / "c.db")
    names = [r[0] for r in con.execute("SELECT name FROM schema_migration ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    Store(url).close()  # a second open applies nothing and does not fail


def test_schema_matches_models(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    insp = inspect(store.engine)
    for table in SQLModel.metadata.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name


def _described(table):
    """A table as the query modules rely on it: each column's type, keys, nullability and
    Python-side default, and the unique constraints."""
    from sqlalchemy import UniqueConstraint

    cols = {}
    for c in table.columns:
        d = c.default
        default = None if d is None else (d.arg.__name__ if d.is_callable else d.arg)
        fks = sorted(fk.target_fullname for fk in c.foreign_keys)
        kind = type(c.type).__name__.replace("AutoString", "String")
        cols[c.name] = (
            kind,
            c.primary_key,
            bool(c.unique),
            bool(c.index),
            c.nullable,
            default,
            fks,
        )
    uniques = sorted(
        tuple(c.name for c in u.columns)
        for u in table.constraints
        if isinstance(u, UniqueConstraint)
    )
    return cols, uniques


def test_core_tables_match_models():
    """`store.tables` (what the query modules and read-only commands use, without SQLModel)
    describes every table exactly as the SQLModel classes of `store.schema` do."""
    from campaignctl.store.tables import metadata

    assert set(metadata.tables) == set(SQLModel.metadata.tables)
    for name, table in metadata.tables.items():
        assert _described(table) == _described(SQLModel.metadata.tables[name]), name


def test_newer_database_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    Store(url).close()
    con = sqlite3.connect(tmp_path / "c.db")
    con.execute("INSERT INTO schema_migration VALUES ('m999_future', '2030-01-01')")
    con.commit()
    con.close()
    with pytest.raises(Exception, match="newer campaignctl"):
        Store(url)


def test_write_uses_begin_immediate(tmp_path):
    """A second writer waits for the first: BEGIN IMMEDIATE takes the write lock at once."""
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    order: list[str] = []
    started = threading.Event()

    def other() -> None:
        started.wait()
        with store.write() as s:
            order.append("second")
            s.add(Lead(email="b@example.com"))

    t = threading.Thread(target=other)
    with store.write() as s:
        t.start()
        started.set()
        t.join(0.3)  # the other writer cannot begin while we hold the lock
        order.append("first")
        s.add(Lead(email="a@example.com"))
    t.join()
    assert order == ["first", "second"]
    with store.read() as s:
        leads = s.exec(select(Lead)).all()
    assert sorted(x.email or "" for x in leads) == ["a@example.com", "b@example.com"]
    assert leads[0].created_at.tzinfo is UTC
    assert leads[0].created_at <= datetime.now(UTC)


def test_missing_database_folder(tmp_path):
    with pytest.raises(Exception, match="folder does not exist"):
        Store(f"sqlite:///{tmp_path / 'nope' / 'c.db'}")


def test_the_per_lead_lookups_explain_makes_use_indexes(tmp_path):
    """explain, sync and leads optout find one lead and its rows: no query may read every row."""
    Store(f"sqlite:///{tmp_path / 'c.db'}").close()
    con = sqlite3.connect(tmp_path / "c.db")
    queries = {
        "SELECT id FROM lead WHERE lower(email) = 'a@b.c'": "ix_lead_email_lower",
        "SELECT id FROM message WHERE lead_id = 1": "ix_message_lead_id",
        "SELECT id FROM event WHERE lead_id = 1": "ix_event_lead_id",
        # one message's events: A/B figures and delivery statuses, once per sent message
        "SELECT id FROM event WHERE message_id = 1 AND kind = 'reply'": "ix_event_message_kind",
        "SELECT id FROM journal WHERE lead_id = 1": "ix_journal_lead_at",
        "SELECT id FROM journal WHERE lead_id IS NULL AND channel = 'sms' AND at >= '2026'": (
            "ix_journal_lead_at"
        ),
    }
    for sql, index in queries.items():
        plan = " ".join(r[-1] for r in con.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, (
            sql,
            plan,
        )
    con.close()
