"""`status` (issue 11): skip reasons per step, and delivery statuses from the recorded events."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlmodel import select
from typer.testing import Result

from campaignctl.classify import Inbound, Kind
from campaignctl.inbound import record
from campaignctl.store import Message
from tests.support import T0, add_leads, open_store, write_project

CHANNELS = """
[channels.sms]
provider = "outbox"
kind = "sms"
"""
CAMPAIGN = """
[campaigns.promo]
kind = "blast"
status = "active"
[[campaigns.promo.steps]]
name = "hi"
channel = "sms"
body = "Hi"
"""


def _delivery(kind: Kind, message_id: int, lead_id: int, at: int, status: str) -> Inbound:
    return Inbound(
        kind=kind,
        channel="sms",
        source_id=f"{kind.value}:{status}:{message_id}:{at}",
        occurred_at=T0 + timedelta(minutes=at),
        lead_id=lead_id,
        message_id=message_id,
        source="provider",
        detail={"status": status},
    )


def test_status_shows_skip_reasons_and_delivery(
    tmp_path: Path, cli: Callable[..., Result], db_url: str
) -> None:
    write_project(tmp_path, CHANNELS, CAMPAIGN)
    add_leads(tmp_path, 6)
    add_leads(tmp_path, {"email": "a@ex.com"}, {"email": "b@ex.com"})  # no phone
    res = cli("-C", tmp_path, "leads", "optout", "l0@ex.com", "--channel", "sms")
    assert res.exit_code == 0, res.stderr
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr

    store = open_store(tmp_path)
    with store.write() as s:
        sent = sorted(
            (m.id or 0, m.lead_id) for m in s.exec(select(Message).where(Message.state == "sent"))
        )
        assert len(sent) == 5
        # one skipped message from before reason codes were stored: grouped by its text
        legacy = s.exec(select(Message).where(Message.reason_code == "no_address")).first()
        assert legacy is not None
        legacy.reason_code, legacy.reason = None, "skipped by hand"
        s.add(legacy)
        (m1, l1), (m2, l2), (m3, l3), (m4, l4), _ = sent
        record(
            s,
            [
                _delivery(Kind.DELIVERED, m1, l1, 1, "delivered"),
                # delivered, then read: counted once, as read
                _delivery(Kind.DELIVERED, m2, l2, 1, "delivered"),
                _delivery(Kind.DELIVERED, m2, l2, 5, "read"),
                _delivery(Kind.UNDELIVERED, m3, l3, 2, "undelivered"),
                # failed, then delivered: failed is final (a status only moves forward,
                # issue 13), the late delivered is not recorded
                _delivery(Kind.FAILED, m4, l4, 1, "failed"),
                _delivery(Kind.DELIVERED, m4, l4, 9, "delivered"),
            ],
            stop_on={},
            now=T0,
        )
    store.close()

    res = cli("-C", tmp_path, "status", "--format", "json")
    assert res.exit_code == 0, res.stderr
    (step,) = json.loads(res.stdout)["campaigns"][0]["steps"]
    assert step["skipped"] == 2  # the opted-out lead is not enrolled
    assert step["skipped_by_reason"] == {"no_address": 1, "skipped by hand": 1}
    assert (step["delivered"], step["read"], step["undelivered"]) == (1, 1, 2)
    assert step["sent"] == 5  # every existing key stays
    assert step["opted_out"] == 0  # of the enrolled leads

    res = cli("-C", tmp_path, "status")
    assert res.exit_code == 0, res.stderr
    for header in ("delivered", "read", "undelivered", "skip reasons"):
        assert header in res.stdout
    assert "no address 1" in res.stdout
    assert "skipped by hand 1" in res.stdout
