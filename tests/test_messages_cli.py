"""`messages list` (issue 11): filters, csv and json shapes, bad input, and streaming."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from campaignctl.config import load
from campaignctl.message_listing import COLUMNS, list_messages
from campaignctl.store import Store
from tests.support import add_leads, write_project

CHANNELS = """
[channels.email]
provider = "outbox"
[channels.sms]
provider = "outbox"
kind = "sms"
"""
CAMPAIGNS = """
[campaigns.promo]
kind = "blast"
status = "active"
[[campaigns.promo.steps]]
name = "hi"
channel = "sms"
body = "Hi"

[campaigns.news]
kind = "blast"
status = "active"
[[campaigns.news.steps]]
name = "letter"
channel = "email"
subject = "News"
body = "News"
"""


def _sent(tmp_path: Path, cli: Callable[..., Result]) -> None:
    write_project(tmp_path, CHANNELS, CAMPAIGNS)
    add_leads(tmp_path, 3)
    add_leads(tmp_path, {"email": "nophone@ex.com"})
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr


def test_csv_has_every_message_and_filters(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _sent(tmp_path, cli)
    res = cli("-C", tmp_path, "messages", "list", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 8  # 4 leads x 2 campaigns
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert [(r["lead"], r["campaign"], r["reason"], r["reason_code"]) for r in skipped] == [
        ("nophone@ex.com", "promo", "lead has no phone number", "no_address")
    ]
    sent = [r for r in rows if r["status"] == "sent"]
    assert all(r["provider_id"] and r["attempts"] == "1" for r in sent)
    assert all(r["sent_at"].endswith("Z") and r["due_at"] for r in sent)

    def ids(*args: str) -> list[str]:
        res = cli("-C", tmp_path, "messages", "list", "--format", "csv", *args)
        assert res.exit_code == 0, res.stderr
        return [r["campaign"] + "/" + r["lead"] for r in csv.DictReader(io.StringIO(res.stdout))]

    assert ids("--campaign", "news") == [
        f"news/{e}" for e in ("l0@ex.com", "l1@ex.com", "l2@ex.com", "nophone@ex.com")
    ]
    assert ids("--campaign", "promo", "--step", "hi", "--status", "skipped") == [
        "promo/nophone@ex.com"
    ]
    assert ids("--lead", "L1@EX.com") == ["promo/l1@ex.com", "news/l1@ex.com"]
    assert ids("--lead", "+1 212 555 0002", "--campaign", "promo") == ["promo/l2@ex.com"]
    assert len(ids("--since", "2000-01-01")) == 8
    assert ids("--since", "2999-01-01T10:00") == []


def test_json_is_an_array_of_objects(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _sent(tmp_path, cli)
    res = cli("-C", tmp_path, "messages", "list", "--format", "json", "--status", "skipped")
    doc = json.loads(res.stdout)
    assert [tuple(d) for d in doc] == [COLUMNS]
    assert doc[0]["reason_code"] == "no_address"
    assert doc[0]["attempts"] == 0
    res = cli("-C", tmp_path, "messages", "list", "--format", "json", "--status", "failed")
    assert json.loads(res.stdout) == []


def test_table_caps_its_rows(
    tmp_path: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaignctl.cli import messages

    _sent(tmp_path, cli)
    monkeypatch.setattr(messages, "TABLE_ROWS", 3)
    res = cli("-C", tmp_path, "messages", "list")
    assert res.exit_code == 0, res.stderr
    assert "first 3 of 8 messages: --format csv (or json) writes them all" in res.stdout


def test_bad_filters_exit_2(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _sent(tmp_path, cli)
    cases = {
        ("--campaign", "promos"): "did you mean 'promo'?",
        ("--status", "delivered"): "pending, sending, sent, failed, skipped, uncertain",
        ("--since", "yesterday"): "YYYY-MM-DD",
        ("--lead", "who@ex.com"): "no lead with email or phone 'who@ex.com'",
    }
    for args, words in cases.items():
        res = cli("-C", tmp_path, "messages", "list", *args)
        assert res.exit_code == 2, args
        assert res.stdout == ""
        first = res.stderr.splitlines()[0]
        assert first.startswith("campaignctl: error: ")
        assert words in first


def test_rows_stream_from_the_database(tmp_path: Path, cli: Callable[..., Result]) -> None:
    """The listing is a generator over the database's cursor: its first row comes before the
    others are read (bench/messages_list.py checks the memory)."""
    _sent(tmp_path, cli)
    cfg = load(tmp_path / "campaigns.toml")
    store = Store.for_config(cfg)
    try:
        import inspect

        listing = list_messages(cfg, store)
        assert inspect.isgenerator(iter(listing))
        it = iter(listing)
        first = next(it)
        assert first[0] == 1
        rest = list(it)
    finally:
        store.close()
    assert [r[0] for r in rest] == list(range(2, 9))
