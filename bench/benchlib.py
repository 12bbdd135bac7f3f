"""Shared set-up for the engine benchmarks: a project folder under bench/out and bulk leads."""

from __future__ import annotations

import random
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from campaignctl.config import Config, load  # noqa: E402
from campaignctl.store import Store, utcnow  # noqa: E402

OUT = REPO / "bench" / "out"
ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Asia/Manila", None]
TAGS = [["buyer"], ["buyer", "vip"], ["seller"], []]


def fresh_project(name: str, toml: str) -> tuple[Config, Store]:
    """An empty folder bench/out/<name> holding `toml` as campaigns.toml, and its store."""
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "campaigns.toml").write_text(toml)
    cfg = load(folder / "campaigns.toml")
    return cfg, Store.for_config(cfg)


def bulk_leads(store: Store, n: int, seed: int = 1) -> None:
    """n varied leads (time zones, tags, attributes), inserted in one transaction."""
    from sqlalchemy import insert

    from campaignctl.store.schema import LEAD

    rng = random.Random(seed)
    now = utcnow()
    rows = [
        {
            "email": f"lead{i}@example.com",
            "phone": f"+1{rng.choice([212, 312, 415, 646])}{i:07d}",
            "first_name": f"Name{i}",
            "last_name": "Doe",
            "timezone": rng.choice(ZONES),
            "status": "new",
            "tags": rng.choice(TAGS),
            "attrs": {
                "city": rng.choice(["Makati", "Taguig", "Austin"]),
                "beds": rng.randint(1, 5),
            },
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    with store.write() as s:
        s.connection().execute(insert(LEAD), rows)


def import_leads(
    store: Store, n: int, tags_attrs: Callable[[int, random.Random], tuple[str, str]], seed: int = 1
) -> float:
    """n leads written through the leads import's own insert (`LeadInserts`), in one
    transaction; `tags_attrs(i, rng)` gives lead i's tags and attributes as the import's JSON
    text. Returns the seconds it took."""
    from campaignctl.store.sqlite import LeadInserts, connect_raw

    rng = random.Random(seed)
    assert store.path is not None
    conn = connect_raw(str(store.path))
    t0 = time.perf_counter()
    db = LeadInserts(conn, now())
    db.begin()
    for i in range(n):
        tags, attrs = tags_attrs(i, rng)
        db.insert(
            (
                f"lead{i}@example.com",
                f"+1{rng.choice([212, 312, 415, 646])}{i:07d}",
                f"Name{i}",
                "Doe",
                rng.choice(ZONES),
                tags,
                attrs,
            )
        )
    db.commit()
    conn.close()
    return time.perf_counter() - t0


def header(tz: str = "UTC") -> str:
    return f"""
[settings]
timezone = "{tz}"

[sender]
name = "Bench"
email = "bench@example.com"
postal_address = "1 Bench Street"
"""


def now() -> datetime:
    return datetime.now(UTC)
