"""`campaignctl report` (issue 14): per campaign, step and variant, counted in SQL; table, csv,
json and one self-contained HTML file (compared with a golden file, and opened in Chromium).

The golden file is tests/data/report_golden.html. After a deliberate change to the report's
look, regenerate it and review the diff:

    CAMPAIGNCTL_REGOLD=1 pytest -o addopts="" tests/test_report.py -k golden
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from typer.testing import Result

from campaignctl.store import Lead
from campaignctl.store.schema import AB_DECISION, ENROLMENT, EVENT, MESSAGE
from tests.support import REPO, add_leads, open_store, travel, write_project

GOLDEN = REPO / "tests" / "data" / "report_golden.html"
CHROMIUM = "/usr/bin/chromium"
T = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Manila

CHANNELS = """
[channels.email]
provider = "outbox"

[channels.sms]
provider = "outbox"
kind = "sms"
"""
CAMPAIGNS = """
[campaigns.promo]
status = "active"
description = "<script>alert('x')</script> & \\"friends\\""

[[campaigns.promo.steps]]
name = "offer"
channel = "email"
subject = "Hi"
body = "Hello"
[[campaigns.promo.steps.variants]]
name = "A"
subject = "Hi"
[[campaigns.promo.steps.variants]]
name = "<b>B</b>"
subject = "Hello"

[[campaigns.promo.steps]]
name = "nudge"
channel = "sms"
delay = "2d"
body = "Hi again"

[campaigns.quiet]
status = "draft"

[[campaigns.quiet.steps]]
name = "hi"
channel = "sms"
body = "Hi"
"""


def _seed(folder: Path) -> dict[str, int]:
    """A campaign with fixed times: 10 leads, offer (variants A and <b>B</b>) sent to all
    but one (failed), nudge sent to 4, with deliveries, replies, an opt-out, a bounce and
    clicks (one a machine's); and an A/B decision. Returns message ids by name."""
    write_project(folder, CHANNELS, CAMPAIGNS)
    ids = add_leads(folder, 10)
    store = open_store(folder)
    msgs: list[dict[str, object]] = []
    mid = 0
    names: dict[str, int] = {}
    for i, lead in enumerate(ids):
        mid += 1
        at = T + timedelta(hours=i * 3)  # over two days in Manila
        failed = i == 9
        msgs.append(_message(mid, "offer", 0, lead, "email", ("A", "<b>B</b>")[i % 2], at, failed))
        names[f"offer{i}"] = mid
    for i, lead in enumerate(ids[:4]):
        mid += 1
        msgs.append(_message(mid, "nudge", 1, lead, "sms", None, T + timedelta(days=2, hours=i)))
        names[f"nudge{i}"] = mid
    o = names
    events = [
        # deliveries: offer0-5 delivered; offer6 undelivered; offer7 delivered then bounced
        *(_event(o[f"offer{i}"], ids[i], "delivered", 1) for i in range(6)),
        _event(o["offer6"], ids[6], "undelivered", 1),
        _event(o["offer7"], ids[7], "delivered", 1),
        _event(o["offer7"], ids[7], "bounce", 2),
        # replies: offer0 matched (twice: one message), offer1's lead in a new thread after
        # nudge1 went: counts for nudge1, its latest message
        _event(o["offer0"], ids[0], "reply", 5),
        _event(o["offer0"], ids[0], "reply", 6),
        _event(None, ids[1], "reply", 60),
        # an opt-out from offer2's lead, matched to no message, before nudge: counts for offer2
        _event(None, ids[2], "optout", 7),
        # clicks: offer3 by a person, offer4 by a link scanner only
        _event(o["offer3"], ids[3], "click", 2, {"machine": False}),
        _event(o["offer4"], ids[4], "click", 1, {"machine": True}),
        # nudge0 delivered, then failed: the latest status wins
        _event(o["nudge0"], ids[0], "delivered", 49),
        _event(o["nudge0"], ids[0], "failed", 50),
    ]
    enrolments = [
        {"campaign": "promo", "lead_id": lead, "state": "active", "enrolled_at": T, "updated_at": T}
        for lead in ids
    ]
    decision = {
        "campaign": "promo",
        "step": "offer",
        "decided_at": T + timedelta(days=2),
        "winner": "A",
        "metric": "reply_rate",
        "rule": "too_few_sends",
        "reason": "too few sends: <script>",
        "z": None,
        "p_value": None,
        "confidence": 0.95,
        "figures": {},
    }
    try:
        with store.write() as s:
            c = s.connection()
            c.execute(insert(ENROLMENT), enrolments)
            c.execute(insert(MESSAGE), msgs)
            c.execute(insert(EVENT), [{**e, "id": n + 1} for n, e in enumerate(events)])
            c.execute(insert(AB_DECISION), [decision])
    finally:
        store.close()
    return names


def _message(
    mid: int,
    step: str,
    index: int,
    lead: int,
    channel: str,
    variant: str | None,
    at: datetime,
    failed: bool = False,
) -> dict[str, object]:
    return {
        "id": mid,
        "campaign": "promo",
        "step": step,
        "step_index": index,
        "lead_id": lead,
        "channel": channel,
        "variant": variant,
        "state": "failed" if failed else "sent",
        "due_at": at,
        "attempts": 1,
        "claimed_at": at,
        "sent_at": None if failed else at,
        "error_code": "mailbox_full" if failed else None,
        "updated_at": at,
    }


def _event(
    message_id: int | None,
    lead: int,
    kind: str,
    hours: float,
    detail: dict[str, object] | None = None,
) -> dict[str, object]:
    at = T + timedelta(hours=hours)
    return {
        "lead_id": lead,
        "message_id": message_id,
        "channel": "email",
        "kind": kind,
        "detail": detail or {},
        "occurred_at": at,
        "recorded_at": at,
    }


def _json(cli: Callable[..., Result], folder: Path, *args: str) -> Any:
    res = cli("-C", folder, "report", *args, "--format", "json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _promo(data: Any) -> Any:
    return {c["name"]: c for c in data["campaigns"]}["promo"]


@pytest.mark.usefixtures("db_url")
def test_counts_per_step_and_variant(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _seed(tmp_path)
    promo = _promo(_json(cli, tmp_path))
    steps = {s["name"]: s for s in promo["steps"]}
    offer, nudge = steps["offer"], steps["nudge"]
    assert {k: offer[k] for k in ("messages", "sent", "failed", "delivered", "undelivered")} == {
        "messages": 10,
        "sent": 9,
        "failed": 1,
        "delivered": 6,  # offer0-5 (offer7 delivered, then bounced: undelivered)
        "undelivered": 2,
    }
    assert offer["failed_by_reason"] == {"mailbox_full": 1}
    # a reply counted once per message; an unmatched opt-out for the lead's latest message
    assert (offer["replied"], offer["opted_out"], offer["bounced"]) == (1, 1, 1)
    assert offer["clicked"] == 1  # the link scanner's click is left out
    assert offer["rates"]["reply_rate"] == {"value": round(1 / 9, 4), "of": "sent"}
    assert offer["rates"]["failure_rate"] == {
        "value": 0.1,
        "of": "attempted (sent + failed)",
    }
    variants = {v["name"]: v for v in offer["variants"]}
    assert (variants["A"]["sent"], variants["<b>B</b>"]["sent"]) == (5, 4)
    assert variants["A"]["failed"] == 0
    assert variants["<b>B</b>"]["failed"] == 1
    assert variants["A"]["replied"] == 1
    assert offer["decision"]["winner"] == "A"
    assert (nudge["sent"], nudge["replied"], nudge["delivered"], nudge["undelivered"]) == (
        4,
        1,  # the reply in a new thread answers nudge1, sent before it
        0,
        1,  # nudge0: delivered, then failed
    )
    assert promo["enrolled"] == 10
    assert promo["sent"] == 13
    assert promo["replied"] == 2
    assert promo["clicks_tracked"] is True
    # days in Asia/Manila: 2 March 09:00 local to 4 March; the failed send is not a send
    assert [(d["day"], d["sends"], d["replies"]) for d in promo["days"]] == [
        ("2026-03-02", {"email": 5, "sms": 0}, 2),  # reply events, each once
        ("2026-03-03", {"email": 4, "sms": 0}, 0),
        ("2026-03-04", {"email": 0, "sms": 4}, 1),
    ]


def test_a_campaign_without_sends_says_so(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _seed(tmp_path)
    data = _json(cli, tmp_path, "quiet")
    (quiet,) = data["campaigns"]
    assert quiet["no_sends"] is True
    assert quiet["rates"]["reply_rate"] == {"value": None, "of": "sent"}  # never 0/0
    assert quiet["clicks_tracked"] is False
    assert "clicked" not in quiet
    res = cli("-C", tmp_path, "report", "quiet")
    assert res.exit_code == 0, res.stderr
    assert "no sends yet: nothing to report" in res.stdout
    html = cli("-C", tmp_path, "report", "quiet", "--format", "html").stdout
    assert "No sends yet" in html
    assert "<svg" not in html


def test_clicked_only_when_tracked(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _seed(tmp_path)
    store = open_store(tmp_path)
    with store.write() as s:
        s.connection().execute(EVENT.delete().where(EVENT.c.kind == "click"))
    store.close()
    promo = _promo(_json(cli, tmp_path))
    assert promo["clicks_tracked"] is False
    assert "clicked" not in promo["steps"][0]
    table = cli("-C", tmp_path, "report", "promo").stdout
    assert "clicked" not in table
    assert "replied" in table


def test_table_names_denominators(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _seed(tmp_path)
    res = cli("-C", tmp_path, "report", "promo")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "rates: failed per attempted (sent + failed), the others per sent" in out
    assert "offer failed: mailbox_full 1" in out
    assert "A/B offer: winner A by reply_rate (too_few_sends)" in out
    assert "<b>B</b>" in out  # rich markup in a name is shown, not interpreted
    assert "per day (Asia/Manila)" in out


def test_csv_rows(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _seed(tmp_path)
    res = cli("-C", tmp_path, "report", "promo", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("campaign,step,variant,channel,enrolled,messages,sent,")
    assert lines[1].startswith("promo,,,,10,14,13,")
    assert any(line.startswith("promo,offer,<b>B</b>,email,,5,4,") for line in lines)
    assert lines[2].endswith(",mailbox_full=1")


@pytest.mark.usefixtures("db_url")
def test_since(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _seed(tmp_path)
    promo = _promo(_json(cli, tmp_path, "--since", "2026-03-04"))
    assert promo["sent"] == 4  # the nudges only
    assert [d["day"] for d in promo["days"]] == ["2026-03-04"]
    assert promo["enrolled"] == 0
    promo = _promo(_json(cli, tmp_path, "--since", "2026-03-03T09:00+08:00"))
    offer = promo["steps"][0]
    assert (offer["sent"], offer["failed"]) == (1, 1)  # offer8 sent 24h after offer0
    assert _promo(_json(cli, tmp_path, "--since", "3650d"))["sent"] == 13
    res = cli("-C", tmp_path, "report", "--since", "last tuesday")
    assert res.exit_code == 2
    assert res.stderr.startswith("campaignctl: error: --since 'last tuesday': not a date")


def test_unknown_campaign_exits_2_with_did_you_mean(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    _seed(tmp_path)
    res = cli("-C", tmp_path, "report", "promoo")
    assert res.exit_code == 2
    assert "no campaign named 'promoo'; did you mean 'promo'?" in res.stderr
    assert "Traceback" not in res.stderr


def test_out_into_a_missing_folder_exits_2(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _seed(tmp_path)
    res = cli("-C", tmp_path, "report", "--format", "html", "--out", tmp_path / "no" / "r.html")
    assert res.exit_code == 2
    assert res.stderr.splitlines()[0] == (
        f"campaignctl: error: --out {tmp_path / 'no' / 'r.html'}: no folder {tmp_path / 'no'}"
    )
    assert not (tmp_path / "no").exists()


def test_out_is_written_atomically(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _seed(tmp_path)
    out = tmp_path / "shared" / "report.html"
    out.parent.mkdir()
    out.write_text("old report")
    before = out.stat().st_ino
    res = cli("-C", tmp_path, "report", "--format", "html", "--out", out)
    assert res.exit_code == 0, res.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert out.stat().st_ino != before  # a new file renamed over the old one, not rewritten
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no temp left
    res = cli("-C", tmp_path, "report", "--format", "csv", "--out", out.parent / "r.csv")
    assert res.exit_code == 0
    assert (out.parent / "r.csv").read_text().startswith("campaign,")


def test_html_escapes_the_campaign_file_and_fetches_nothing(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    _seed(tmp_path)
    html = cli("-C", tmp_path, "report", "--format", "html").stdout
    assert "<script" not in html
    assert "<b>B</b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;friends&#34;" in html
    assert "&lt;b&gt;B&lt;/b&gt;" in html
    fetches = r"(src|href)\s*=|@import|url\(|https?://(?!www\.w3\.org/2000/svg)"
    assert not re.search(fetches, html)
    assert "@media print" in html
    assert html.count("<svg") == 3  # sends per day, funnel, variants of offer; none for quiet
    assert "<svg" in html
    assert "variants of offer" in html


def test_html_is_the_golden_file(tmp_path: Path, cli: Callable[..., Result]) -> None:
    """Same data, same bytes: no timestamp, no dict order, no float noise."""
    _seed(tmp_path)
    html = cli("-C", tmp_path, "report", "--format", "html").stdout
    assert cli("-C", tmp_path, "report", "--format", "html").stdout == html
    if os.environ.get("CAMPAIGNCTL_REGOLD"):
        GOLDEN.write_text(html, encoding="utf-8")
    assert html == GOLDEN.read_text(encoding="utf-8"), (
        "the HTML report changed: if on purpose, regenerate with "
        "CAMPAIGNCTL_REGOLD=1 pytest -o addopts='' tests/test_report.py -k golden"
    )


@pytest.mark.usefixtures("db_url")
def test_report_of_real_sends(tmp_path: Path, cli: Callable[..., Result]) -> None:
    """Messages sent through the outbox channel by `send`, then reported."""
    write_project(tmp_path, CHANNELS, CAMPAIGNS)
    add_leads(tmp_path, 3)
    add_leads(tmp_path, Lead(email="noone@ex.com"))  # no phone: its nudge is skipped
    assert cli("-C", tmp_path, "send").exit_code == 0
    travel(tmp_path, timedelta(days=3))
    assert cli("-C", tmp_path, "send").exit_code == 0
    promo = _promo(_json(cli, tmp_path))
    offer, nudge = promo["steps"]
    assert (offer["sent"], nudge["sent"], nudge["messages"]) == (4, 3, 4)
    assert sum(v["sent"] for v in offer["variants"]) == 4
    assert sum(sum(d["sends"].values()) for d in promo["days"]) == 7
    assert promo["rates"]["delivery_rate"] == {"value": 0.0, "of": "sent"}


def _png_non_white(path: Path) -> tuple[int, int, int]:
    """(width, height, pixels that are not white) of an 8-bit RGB or RGBA PNG, decoded with
    zlib (the five PNG filters undone row by row)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, kind = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            width, height, depth, kind = struct.unpack(">IIBB", body[:10])
            assert depth == 8, depth
            assert kind in (2, 6), kind
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    bpp = 3 if kind == 2 else 4
    stride = width * bpp
    prev = bytearray(stride)
    non_white = 0
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        for x in range(0, stride, bpp):
            if line[x] < 240 or line[x + 1] < 240 or line[x + 2] < 240:
                non_white += 1
        prev = line
    return width, height, non_white


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run .ci/deps (installs chromium)"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1200,2000",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_html_renders_in_chromium(tmp_path: Path, cli: Callable[..., Result]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _seed(project)
    page = tmp_path / "report.html"
    res = cli("-C", project, "report", "--format", "html", "--out", page)
    assert res.exit_code == 0, res.stderr
    shot = tmp_path / "report.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), run.stderr[-2000:]
    width, height, ink = _png_non_white(shot)
    assert (width, height) == (1200, 2000)
    assert ink > 20_000, f"the screenshot is (nearly) blank: {ink} non-white pixels"
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert dom.count("<svg") == 3
    assert dom.count('class="bar"') >= 10
    for label in ("sends per day per channel, and replies", "funnel per step", "variants of offer"):
        assert f'aria-label="{label}"' in dom
    assert "Steps and variants" in dom
    assert "mailbox_full" in dom


def test_a_fresh_project_reports_no_sends_and_creates_no_database(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    write_project(tmp_path, CHANNELS, CAMPAIGNS)
    res = cli("-C", tmp_path, "report")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.count("no sends yet: nothing to report") == 2
    assert not list(tmp_path.glob("campaignctl.db*"))


def test_out_naming_a_folder_exits_2(tmp_path: Path, cli: Callable[..., Result]) -> None:
    write_project(tmp_path, CHANNELS, CAMPAIGNS)
    res = cli("-C", tmp_path, "report", "--out", tmp_path)
    assert res.exit_code == 2
    assert res.stderr.startswith(f"campaignctl: error: --out {tmp_path}: is a folder")
