"""A/B tests that pick a winner: assignment, held leads, the decision made once, the statistics.

Engine-level with the real Engine and time travel; replies are recorded through
`campaignctl.inbound.record`, as `sync` records them.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from campaignctl.abtest import (
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    TOO_FEW,
    Arm,
    pick_winner,
    two_proportion,
)
from campaignctl.classify import Inbound, Kind
from campaignctl.engine import Engine
from campaignctl.engine.decide import in_test_group
from campaignctl.inbound import record
from campaignctl.planner import plan
from campaignctl.store import Message, Store, abtests
from tests.support import (
    OUTBOX_CHANNELS,
    T0,
    Cli,
    add_leads,
    days,
    messages,
    project,
    status_steps,
    write_project,
)
from tests.support.rows import sql_rows

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

AB = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.promo]
kind = "blast"
status = "active"
stop_on = []

[[campaigns.promo.steps]]
name = "offer"
channel = "sms"
body = "unused"
[[campaigns.promo.steps.variants]]
name = "A"
body = "Plain offer. Reply STOP to opt out."
[[campaigns.promo.steps.variants]]
name = "B"
body = "Personal offer, {{ lead.first_name }}. Reply STOP to opt out."
[campaigns.promo.steps.ab]
test_fraction = 0.5
wait = "2d"
metric = "reply_rate"
confidence = 0.95
min_per_variant = MIN
fallback = "A"
"""
LEADS = 200


def _setup(tmp_path: Path, min_per_variant: int = 10) -> tuple[Store, Engine]:
    cfg = project(tmp_path, AB.replace("MIN", str(min_per_variant)))
    store = Store.for_config(cfg)
    add_leads(store, LEADS)
    return store, Engine(cfg, store)


def rows(store: Store, query: str) -> list[tuple[Any, ...]]:
    """What the database holds, read beside the store (SQLite's file, or PostgreSQL)."""
    path = store.engine.url.database
    assert path is not None
    return sql_rows(Path(path), query)


def _reply(store: Store, msgs: list[Message], at_days: float) -> None:
    """A reply to each message, recorded as sync records it."""
    items = [
        Inbound(
            Kind.REPLY,
            "sms",
            f"reply:{m.id}",
            T0 + days(at_days),
            lead_id=m.lead_id,
            message_id=m.id,
        )
        for m in msgs
    ]
    with store.write() as s:
        record(s, items, stop_on={"promo": []}, now=T0 + days(at_days))


def test_the_test_group_sends_the_rest_waits_then_gets_the_winner_decided_once(
    tmp_path: Path,
) -> None:
    store, eng = _setup(tmp_path)
    rng = random.Random(1)
    eng.run_pass(T0, rng)
    msgs = messages(store)
    test_group = {m.lead_id for m in msgs if m.state == "sent"}
    expected = {m.lead_id for m in msgs if in_test_group(0.5, "promo", "offer", m.lead_id)}
    assert test_group == expected
    assert 70 < len(test_group) < 130
    sent = [m for m in msgs if m.state == "sent"]
    assert {m.variant for m in sent} == {"A", "B"}
    held = [m for m in msgs if m.state == "pending"]
    assert len(held) == LEADS - len(test_group)
    when = (T0 + days(2)).strftime("%Y-%m-%d %H:%M UTC")
    assert {m.reason for m in held} == {f"held for the A/B winner (decided at {when})"}
    assert {m.reason_code for m in held} == {"ab_wait"}
    assert {m.due_at for m in held} == {T0 + days(2)}

    # B's leads reply far more: 1 in 10 of A's, every other one of B's
    a = [m for m in sent if m.variant == "A"]
    b = [m for m in sent if m.variant == "B"]
    _reply(store, a[::10], 1)
    _reply(store, b[::2], 1)

    assert eng.run_pass(T0 + days(1.9), rng).total("sent") == 0
    res = eng.run_pass(T0 + days(2), rng)
    assert res.total("sent") == len(held)
    # a second engine (another process) at a later pass: the decision stays the one made
    Engine(eng.cfg, store).run_pass(T0 + days(3), rng)
    assert eng.decide_ab_tests(T0 + days(4)) == []
    decided = rows(store, "SELECT winner, rule, metric, figures, p_value, z FROM ab_decision")
    assert len(decided) == 1
    winner, rule, metric, figures, p_value, z_stored = decided[0]
    assert (winner, rule, metric) == ("B", SIGNIFICANT, "reply_rate")
    figs = json.loads(figures)
    assert figs["A"] == {"sends": len(a), "successes": len(a[::10]), "rate": len(a[::10]) / len(a)}
    assert figs["B"]["successes"] == len(b[::2])
    z, p = two_proportion(len(b[::2]), len(b), len(a[::10]), len(a))
    assert (p_value, z_stored) == (pytest.approx(p), pytest.approx(z))
    after = {m.id: m for m in messages(store)}
    assert {after[m.id].variant for m in held} == {"B"}
    assert {after[m.id].state for m in held} == {"sent"}
    journal = rows(store, "SELECT kind, code, detail FROM journal WHERE kind = 'ab.decided'")
    assert [(k, c) for k, c, _ in journal] == [("ab.decided", SIGNIFICANT)]
    deferred = rows(store, "SELECT count(*) FROM journal WHERE code = 'ab_wait'")
    assert deferred == [(len(held),)]


def test_no_significant_difference_gives_the_fallback(tmp_path: Path) -> None:
    store, eng = _setup(tmp_path)
    rng = random.Random(1)
    eng.run_pass(T0, rng)
    sent = [m for m in messages(store) if m.state == "sent"]
    # the same share replies on both: p far above 0.05
    _reply(store, sent[::4], 1)
    eng.run_pass(T0 + days(2), rng)
    [(winner, rule, p_value)] = rows(store, "SELECT winner, rule, p_value FROM ab_decision")
    assert (winner, rule) == ("A", NOT_SIGNIFICANT)
    assert p_value >= 0.05
    held = [m for m in messages(store) if m.id not in {s.id for s in sent}]
    assert {m.variant for m in held} == {"A"}


def test_too_few_sends_per_variant_gives_the_fallback(tmp_path: Path) -> None:
    store, eng = _setup(tmp_path, min_per_variant=1000)
    rng = random.Random(1)
    eng.run_pass(T0, rng)
    b = [m for m in messages(store) if m.variant == "B"]
    _reply(store, b, 1)  # B is far ahead, but the test is small
    eng.run_pass(T0 + days(2), rng)
    [(winner, rule, reason)] = rows(store, "SELECT winner, rule, reason FROM ab_decision")
    assert (winner, rule) == ("A", TOO_FEW)
    assert "fewer than 1000 sends" in reason


def test_two_processes_deciding_store_one_decision(tmp_path: Path) -> None:
    store, eng = _setup(tmp_path)
    eng.run_pass(T0, random.Random(1))
    other = Store.for_config(eng.cfg)
    made = [Engine(eng.cfg, st).decide_ab_tests(T0 + days(2)) for st in (store, other)]
    assert made == [[("promo", "offer")], []]
    with store.read() as s:
        assert len(abtests.decisions(s, ["promo"])) == 1


def test_the_plan_holds_the_rest_until_the_decision(tmp_path: Path) -> None:
    store, eng = _setup(tmp_path)
    forecast = plan(eng.cfg, store, T0, days=5)
    per_day = [c["sms"] for c in forecast.per_day.values()]
    in_test = sum(1 for i in range(1, LEADS + 1) if in_test_group(0.5, "promo", "offer", i))
    # day 1: the test group; day 3 (two days later, at the same hour): everyone else
    assert per_day == [in_test, 0, LEADS - in_test, 0, 0]
    eng.run_pass(T0, random.Random(1))
    eng.run_pass(T0 + days(2), random.Random(1))
    sends = [m.sent_at for m in messages(store) if m.state == "sent"]
    assert sum(1 for t in sends if t == T0) == in_test
    assert sum(1 for t in sends if t == T0 + days(2)) == LEADS - in_test


# ---------------------------------------------------------------- the statistics


def test_the_z_test_matches_a_hand_computed_example() -> None:
    # A 30/200 = 0.15, B 50/200 = 0.25
    # pooled p = 80/400 = 0.2; se = sqrt(0.2 * 0.8 * (1/200 + 1/200)) = sqrt(0.0016) = 0.04
    # z = (0.25 - 0.15) / 0.04 = 2.5; two-sided p = 2 * (1 - Phi(2.5)) = 2 * 0.0062097 = 0.012419
    z, p = two_proportion(50, 200, 30, 200)
    assert z == pytest.approx(2.5)
    assert p == pytest.approx(0.0124193, abs=1e-6)
    arms = [Arm("A", 200, 30), Arm("B", 200, 50)]
    won = pick_winner(arms, 0.95, 100, "A", "reply_rate")
    assert (won.winner, won.rule) == ("B", SIGNIFICANT)
    assert won.p_value == pytest.approx(0.0124193, abs=1e-6)
    # at 99% confidence 0.0124 is not below 0.01: the fallback
    strict = pick_winner(arms, 0.99, 100, "A", "reply_rate")
    assert (strict.winner, strict.rule) == ("A", NOT_SIGNIFICANT)
    # 200 sends each is below a minimum of 201: the fallback, whatever p says
    assert pick_winner(arms, 0.95, 201, "A", "reply_rate").rule == TOO_FEW


def test_no_spread_and_clicks_give_the_fallback() -> None:
    assert two_proportion(0, 100, 0, 100) == (0.0, 1.0)
    arms = [Arm("A", 200, 0), Arm("B", 200, 0)]
    assert pick_winner(arms, 0.95, 1, "B", "reply_rate").winner == "B"
    clicks = pick_winner([Arm("A", 200, 30), Arm("B", 200, 50)], 0.95, 1, "A", "click_rate")
    assert (clicks.winner, clicks.rule, clicks.p_value) == ("A", "not_tracked", None)
    assert not math.isnan(two_proportion(5, 10, 5, 10)[1])


# ---------------------------------------------------------------- check


def _check(cli: Cli, folder: Path, toml: str) -> tuple[int, list[str]]:
    write_project(folder, OUTBOX_CHANNELS, toml)
    res = cli("-C", folder, "check")
    return res.exit_code, [ln for ln in res.stdout.splitlines() if ln.startswith(("error", "warn"))]


AB_STEP = """
[campaigns.promo]
status = "active"

[[campaigns.promo.steps]]
name = "offer"
channel = "sms"
body = "Hi {{ lead.first_name | default('there') }}. Reply STOP to opt out."
VARIANTS
[campaigns.promo.steps.ab]
AB
"""
TWO = """
[[campaigns.promo.steps.variants]]
name = "A"
[[campaigns.promo.steps.variants]]
name = "B"
weight = 3
"""


def test_check_accepts_an_ab_table_and_warns_about_click_rate(cli: Cli, tmp_path: Path) -> None:
    good = AB_STEP.replace("VARIANTS", TWO).replace("AB", 'fallback = "A"')
    assert _check(cli, tmp_path, good) == (0, [])
    clicks = AB_STEP.replace("VARIANTS", TWO).replace("AB", 'fallback = "A"\nmetric = "click_rate"')
    code, lines = _check(cli, tmp_path, clicks)
    assert code == 0
    assert len(lines) == 1
    assert lines[0].startswith("warning: campaigns.toml:")
    assert "campaigns.promo.steps[0].ab.metric: click_rate needs click tracking" in lines[0]


def test_check_refuses_bad_ab_tables_with_their_key_paths(cli: Cli, tmp_path: Path) -> None:
    code, lines = _check(
        cli, tmp_path, AB_STEP.replace("VARIANTS", "").replace("AB", 'fallback = "A"')
    )
    assert code == 1
    assert len(lines) == 1
    assert "campaigns.promo.steps[0].ab: an A/B test needs two variants at least" in lines[0]

    code, lines = _check(
        cli, tmp_path, AB_STEP.replace("VARIANTS", TWO).replace("AB", 'fallback = "Bx"')
    )
    assert code == 1
    assert (
        "campaigns.promo.steps[0].ab.fallback: fallback 'Bx' is not a variant of this step (A, B)"
        in lines[0]
    )
    assert "did you mean 'B'?" in lines[0]

    # weights are relative shares, each above 0: 0 does not add up to a share
    zero = TWO.replace("weight = 3", "weight = 0")
    code, lines = _check(
        cli, tmp_path, AB_STEP.replace("VARIANTS", zero).replace("AB", 'fallback = "A"')
    )
    assert code == 1
    assert "campaigns.promo.steps[0].variants[1].weight: must be a number above 0" in lines[0]

    out_of_range = (
        'fallback = "A"\ntest_fraction = 1.5\nwait = "0s"\nmetric = "open_rate"\n'
        "confidence = 0.3\nmin_per_variant = 0\n"
    )
    code, lines = _check(
        cli, tmp_path, AB_STEP.replace("VARIANTS", TWO).replace("AB", out_of_range)
    )
    assert code == 1
    keys = [ln.split(": ")[2] for ln in lines]
    ab = "campaigns.promo.steps[0].ab"
    assert keys == [
        f"{ab}.test_fraction",
        f"{ab}.wait",
        f"{ab}.metric",
        f"{ab}.confidence",
        f"{ab}.min_per_variant",
    ]
    assert "less than or equal to 1" in lines[0]
    assert "must be a positive duration" in lines[1]
    assert "'reply_rate', 'delivery_rate' or 'click_rate'" in lines[2]

    missing = AB_STEP.replace("VARIANTS", TWO).replace("AB", "test_fraction = 0.1")
    code, lines = _check(cli, tmp_path, missing)
    assert code == 1
    assert f"{ab}.fallback: required key is missing" in lines[0]


# ---------------------------------------------------------------- status


def test_status_shows_each_variants_figures_and_the_decision(cli: Cli, tmp_path: Path) -> None:
    store, eng = _setup(tmp_path)
    rng = random.Random(1)
    eng.run_pass(T0, rng)
    sent = [m for m in messages(store) if m.state == "sent"]
    a = [m for m in sent if m.variant == "A"]
    b = [m for m in sent if m.variant == "B"]
    _reply(store, a[::10] + b[::2], 1)

    step = status_steps(cli, tmp_path)["offer"]
    assert [v["name"] for v in step["variants"]] == ["A", "B"]
    va, vb = step["variants"]
    assert (va["sent"], va["replies"], va["delivered"]) == (len(a), len(a[::10]), 0)
    assert vb["rate"] == pytest.approx(len(b[::2]) / len(b))
    assert step["ab"]["decision"] is None
    assert step["ab"]["decide_at"] == (T0 + days(2)).isoformat()
    res = cli("-C", tmp_path, "status")
    assert "promo/offer: variants" in res.stdout
    assert (
        f"promo/offer: A/B test running, winner by reply_rate at {(T0 + days(2)).isoformat()[:16]}Z"
        in res.stdout
    )

    eng.run_pass(T0 + days(2), rng)
    step = status_steps(cli, tmp_path)["offer"]
    decision = step["ab"]["decision"]
    assert (decision["winner"], decision["rule"]) == ("B", SIGNIFICANT)
    assert decision["figures"]["B"]["sends"] == len(b)
    assert step["variants"][1]["sent"] > len(b)  # the held leads got B
    res = cli("-C", tmp_path, "status")
    line = next(ln for ln in res.stdout.splitlines() if "A/B winner" in ln)
    assert line.startswith(
        f"promo/offer: A/B winner B by reply_rate (p-value {decision['p_value']:.4g}, "
    )
    assert "rule significant: B beat A" in line


def test_explain_says_a_lead_was_held_for_the_winner_and_the_decision(
    cli: Cli, tmp_path: Path
) -> None:
    store, eng = _setup(tmp_path)
    rng = random.Random(1)
    eng.run_pass(T0, rng)
    held = next(m for m in messages(store) if m.state == "pending")
    eng.run_pass(T0 + days(2), rng)
    address = f"l{held.lead_id - 1}@ex.com"  # numbered leads: l0 has id 1
    res = cli("-C", tmp_path, "explain", address, "--format", "json")
    assert res.exit_code == 0, res.output
    timeline = json.loads(res.stdout)["timeline"]
    deferred = next(x for x in timeline if x["what"] == "deferred")
    assert deferred["code"] == "ab_wait"
    assert "held for the A/B winner (decided at" in deferred["text"]
    decided = next(x for x in timeline if x["what"] == "ab decided")
    assert decided["text"].startswith("A/B winner A by reply_rate (p-value ")
    sent = next(x for x in timeline if x["what"] == "sent")
    assert "(variant A)" in sent["text"]
    text = cli("-C", tmp_path, "explain", address).stdout
    assert "held for the A/B winner" in text
    assert "A/B winner A by reply_rate" in text


def test_send_says_how_many_leads_wait_for_the_winner(cli: Cli, tmp_path: Path) -> None:
    store, _ = _setup(tmp_path)
    store.close()
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.output
    summary = next(ln for ln in res.stdout.splitlines() if ln.startswith("summary: "))
    held = LEADS - sum(1 for i in range(1, LEADS + 1) if in_test_group(0.5, "promo", "offer", i))
    assert f", {held} held for the A/B winner" in summary
