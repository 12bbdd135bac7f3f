"""What the database and the outbox hold, read back for assertions."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from campaignctl.store import Enrolment, Message, OptOut, Store
from tests.support.leads import open_store


def messages(store: Store) -> list[Message]:
    """Every message row of `store`, by id."""
    with store.read() as s:
        return list(s.exec(select(Message).order_by(col(Message.id))))


def sent_times(store: Store, channel: str | None = None) -> list[datetime]:
    return sorted(
        m.sent_at
        for m in messages(store)
        if m.state == "sent" and m.sent_at and (channel is None or m.channel == channel)
    )


def rows(folder: Path) -> list[Message]:
    """Every message row of the project in `folder`, by id."""
    store = open_store(folder)
    try:
        return messages(store)
    finally:
        store.close()


def row(folder: Path, step: str, lead_id: int) -> Message:
    """The message of `step` for `lead_id`."""
    (found,) = [m for m in rows(folder) if m.step == step and m.lead_id == lead_id]
    return found


def optouts(folder: Path) -> list[tuple[int, str, str]]:
    store = open_store(folder)
    try:
        with store.read() as s:
            return [(o.lead_id, o.channel, o.source) for o in s.exec(select(OptOut))]
    finally:
        store.close()


def enrolments(folder: Path) -> dict[int, tuple[str, str | None]]:
    store = open_store(folder)
    try:
        with store.read() as s:
            return {e.lead_id: (e.state, e.reason) for e in s.exec(select(Enrolment))}
    finally:
        store.close()


def outbox_files(folder: Path) -> list[dict[str, Any]]:
    """The .json messages an outbox wrote."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def sql_rows(sqlite_file: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of a plain SQL query on the test's database, as SQLite gives them (JSON and
    times as text): the SQLite file, or the PostgreSQL database in CAMPAIGNCTL_DATABASE when
    the test runs there (tests/support/databases.py). `?` marks the parameters."""
    import os
    import sqlite3

    url = os.environ.get("CAMPAIGNCTL_DATABASE", "")
    if not url.startswith("postgres"):
        with sqlite3.connect(sqlite_file) as conn:
            return list(conn.execute(sql, params).fetchall())
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.types.string import TextLoader

    class _SqliteTime(Loader):
        def load(self, data: Any) -> str:
            text = bytes(data).decode()
            return text + ".000000" if "." not in text else text.ljust(26, "0")

    with psycopg.connect("postgresql://" + url.split("://", 1)[1]) as pg:
        for name in ("json", "jsonb"):
            pg.adapters.register_loader(name, TextLoader)
        pg.adapters.register_loader("timestamp", _SqliteTime)
        query = sql.replace("?", "%s").encode()
        return [tuple(r) for r in pg.execute(query, params).fetchall()]


def sql_dicts(sqlite_file: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """`sql_rows` as dicts by column name (sqlite3.Row's keys)."""
    import os
    import sqlite3

    url = os.environ.get("CAMPAIGNCTL_DATABASE", "")
    if not url.startswith("postgres"):
        with sqlite3.connect(sqlite_file) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, params).fetchall()]
    import psycopg

    with psycopg.connect("postgresql://" + url.split("://", 1)[1]) as conn:
        names = [
            d.name
            for d in (conn.execute(sql.replace("?", "%s").encode(), params).description or [])
        ]
    return [dict(zip(names, row, strict=True)) for row in sql_rows(sqlite_file, sql, params)]
