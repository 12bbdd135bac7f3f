"""The lead adder: leads written through the store, by count or one by one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from campaignctl.config import load
from campaignctl.store import Lead, Store

JUAN = {"email": "juan@example.com", "first_name": "Juan"}
MARIA = {"email": "maria@example.com", "first_name": "Maria"}
JUAN_PHONE = {"phone": "+639171234567", "first_name": "Juan"}
MARIA_PHONE = {"phone": "+639171234568", "first_name": "Maria"}


def open_store(folder: Path) -> Store:
    """The project's database, as `send` opens it."""
    return Store.for_config(load(folder / "campaigns.toml"))


def numbered(n: int, start: int = 0, **fields: Any) -> list[Lead]:
    """n leads: emails l<i>@ex.com, phones +1212555<i>, first names N<i>, plus `fields`."""
    return [
        Lead(
            email=f"l{i}@ex.com",
            phone=f"+1212555{i:04d}" if i < 10000 else f"+1646{i:07d}",
            first_name=f"N{i}",
            **fields,
        )
        for i in range(start, start + n)
    ]


def add_leads(
    where: Store | Path, *leads: int | Mapping[str, Any] | Lead, start: int = 0, **fields: Any
) -> list[int]:
    """Leads written through `Store.write()`; their ids in order.

    `where` is a store or a project folder (its database, opened and closed here). `leads` is
    either one count (`add_leads(store, 3, start=10, status="x")`: `numbered()` leads with
    `fields`) or the leads themselves, as `Lead`s or dicts of Lead fields.
    """
    if len(leads) == 1 and isinstance(leads[0], int):
        rows = numbered(leads[0], start, **fields)
    else:
        rows = [
            lead if isinstance(lead, Lead) else Lead(**lead)
            for lead in leads
            if not isinstance(lead, int)
        ]
    store = where if isinstance(where, Store) else open_store(where)
    try:
        with store.write() as s:
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows if r.id is not None]
    finally:
        if store is not where:
            store.close()
