"""The `worker` table: every `send` and daemon process on the database, with its heartbeat.

A worker's id is what its claims write in `message.claimed_by` (host, pid and start time,
`engine.context.worker_id`). It beats inside the transactions it writes anyway (each claim and
each record), so a beat costs one small UPDATE, never a transaction of its own; the daemon also
beats after every tick. A worker whose heartbeat is older than the recovery timeout is dead to
the others: its `sending` claims become `uncertain` (`engine.recovery`) and its row goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from campaignctl.store.conn import Conn, connection


def beat(conn: Conn, worker: str, host: str, pid: int, now: datetime) -> None:
    """Move the worker's heartbeat to `now`; its row is (re-)made when missing (its first beat,
    or another worker took it for dead meanwhile). Only the worker writes its own row."""
    from sqlalchemy import insert, update

    from campaignctl.store.tables import WORKER

    c = connection(conn)
    done = c.execute(update(WORKER).where(WORKER.c.id == worker).values(heartbeat_at=now))
    if done.rowcount == 0:
        c.execute(
            insert(WORKER).values(id=worker, host=host, pid=pid, started_at=now, heartbeat_at=now)
        )


def heartbeats(conn: Conn, workers: Sequence[str]) -> dict[str, datetime]:
    """worker -> its last heartbeat, for those of `workers` that have a row."""
    from sqlalchemy import select

    from campaignctl.store.tables import WORKER

    if not workers:
        return {}
    rows = connection(conn).execute(
        select(WORKER.c.id, WORKER.c.heartbeat_at).where(WORKER.c.id.in_(sorted(set(workers))))
    )
    return {str(w): at for w, at in rows}


def stale(conn: Conn, before: datetime) -> list[str]:
    """The workers whose heartbeat is older than `before`."""
    from sqlalchemy import select

    from campaignctl.store.tables import WORKER

    rows = connection(conn).execute(select(WORKER.c.id).where(WORKER.c.heartbeat_at < before))
    return [str(r[0]) for r in rows]


def remove(conn: Conn, workers: Sequence[str]) -> None:
    """Forget these workers (stopped, or found dead and their claims recovered)."""
    from sqlalchemy import delete

    from campaignctl.store.tables import WORKER

    if workers:
        connection(conn).execute(delete(WORKER).where(WORKER.c.id.in_(list(workers))))


def listing(conn: Conn) -> list[Any]:
    """(id, host, pid, started_at, heartbeat_at) of every worker, latest heartbeat first."""
    from sqlalchemy import select

    from campaignctl.store.tables import WORKER

    return list(
        connection(conn).execute(
            select(
                WORKER.c.id, WORKER.c.host, WORKER.c.pid, WORKER.c.started_at, WORKER.c.heartbeat_at
            ).order_by(WORKER.c.heartbeat_at.desc(), WORKER.c.id)
        )
    )
