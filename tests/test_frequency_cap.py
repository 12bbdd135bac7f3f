"""`settings.max_per_lead`: at most N messages to a lead in any rolling window, across campaigns
and channels; a held message waits with the reason, and priority decides who goes first."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import Result

from campaignctl.config import Config, load
from campaignctl.engine import Engine
from campaignctl.engine.decide import Defer, Send, Skip, Why, frequency_hold
from campaignctl.store import Store, journal
from campaignctl.timespec import PerSpan, parse_per_span
from tests.support import T0, add_leads, days, messages, sent_times
from tests.support.project import campaign_toml

H = timedelta(hours=1)

THREE_STEPS = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name | default('there') }}, reply STOP to opt out."
[[campaigns.welcome.steps]]
name = "again"
channel = "sms"
delay = "1h"
body = "Again"
[[campaigns.welcome.steps]]
name = "third"
channel = "sms"
delay = "1h"
body = "Third"
"""

# Two campaigns due at the same instant for the same leads, on two channels; the file names
# the newsletter's channel first, the priority says the alert goes first.
TWO_CAMPAIGNS = """
[channels.email]
provider = "outbox"

[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.news]
kind = "blast"
status = "active"
priority = 10
[[campaigns.news.steps]]
channel = "email"
subject = "News"
body = "News for {{ lead.first_name }}"

[campaigns.alert]
kind = "blast"
status = "active"
priority = 1
[[campaigns.alert.steps]]
channel = "sms"
body = "Alert for {{ lead.first_name }}"

[campaigns.digest]
kind = "blast"
status = "active"
priority = 5
[[campaigns.digest.steps]]
channel = "sms"
body = "Digest for {{ lead.first_name }}"
"""


def capped(tmp_path: Path, body: str, cap: str) -> Config:
    """A project whose [settings] has `max_per_lead = cap`."""
    text = campaign_toml(tz="UTC", region=None) + body
    text = text.replace("[settings]\n", f'[settings]\nmax_per_lead = "{cap}"\n', 1)
    (tmp_path / "campaigns.toml").write_text(text)
    return load(tmp_path / "campaigns.toml")


def by_step(store: Store, lead_id: int) -> dict[str, object]:
    return {m.step: m for m in messages(store) if m.lead_id == lead_id}


def test_cap_defers_a_leads_next_message_until_the_oldest_send_leaves_the_window(
    tmp_path: Path,
) -> None:
    cfg = capped(tmp_path, THREE_STEPS, "2/1d")
    store = Store.for_config(cfg)
    (lead,) = add_leads(store, 1)
    eng = Engine(cfg, store)
    rng = random.Random(1)
    assert eng.run_pass(T0, rng).total("sent") == 1
    assert eng.run_pass(T0 + H, rng).total("sent") == 1  # the second of 2 in a day goes
    res = eng.run_pass(T0 + 2 * H, rng)
    assert res.total("sent") == 0
    assert res.total("deferred_frequency_cap") == 1
    third = by_step(store, lead)["third"]
    assert third.state == "pending"  # type: ignore[attr-defined]
    assert third.reason == "frequency cap: 2 in 1d"  # type: ignore[attr-defined]
    assert third.reason_code == "frequency_cap"  # type: ignore[attr-defined]
    # the first send (T0) leaves the rolling day at T0 + 1d: then there is room for one
    assert third.due_at == T0 + days(1)  # type: ignore[attr-defined]
    with store.read() as s:
        rows = journal.for_lead(s.connection(), lead)
    deferred = [r for r in rows if r.kind == "message.deferred"]
    assert [(r.step, r.code) for r in deferred] == [("third", "frequency_cap")]
    assert deferred[0].detail["reason"] == "frequency cap: 2 in 1d"
    assert deferred[0].detail["until"] == (T0 + days(1)).isoformat()
    assert eng.run_pass(T0 + days(1) - timedelta(seconds=1), rng).total("sent") == 0
    assert eng.run_pass(T0 + days(1), rng).total("sent") == 1
    assert sent_times(store) == [T0, T0 + H, T0 + days(1)]


def test_cap_of_one_sends_the_higher_priority_campaign_first(tmp_path: Path) -> None:
    cfg = capped(tmp_path, TWO_CAMPAIGNS, "1/1d")
    store = Store.for_config(cfg)
    leads = add_leads(store, 3)
    eng = Engine(cfg, store)
    rng = random.Random(1)
    res = eng.run_pass(T0, rng)
    # one message per lead: the alert (priority 1), although email comes first in the file
    assert res.total("sent") == 3
    assert res.total("deferred_frequency_cap") == 6
    for lead in leads:
        camp = {m.campaign: m for m in messages(store) if m.lead_id == lead}
        assert camp["alert"].state == "sent"
        assert camp["news"].state == camp["digest"].state == "pending"
        assert camp["news"].due_at == camp["digest"].due_at == T0 + days(1)
        assert camp["news"].reason == "frequency cap: 1 in 1d"
    # a day later the digest (priority 5) goes before the newsletter; a day after, the news
    assert eng.run_pass(T0 + days(1), rng).total("sent") == 3
    sent = {(m.campaign, m.lead_id) for m in messages(store) if m.state == "sent"}
    assert {c for c, _ in sent} == {"alert", "digest"}
    assert eng.run_pass(T0 + days(2), rng).total("sent") == 3
    assert {m.state for m in messages(store)} == {"sent"}


def test_cap_counts_sends_on_every_channel_and_in_flight(tmp_path: Path) -> None:
    """The frequency cap reads sent, sending and uncertain messages of the lead."""
    cfg = capped(tmp_path, TWO_CAMPAIGNS, "2/12h")
    store = Store.for_config(cfg)
    add_leads(store, 1)
    eng = Engine(cfg, store)
    res = eng.run_pass(T0, random.Random(1))
    assert res.total("sent") == 2  # alert (sms) then digest (sms); the email waits 12 hours
    (news,) = [m for m in messages(store) if m.campaign == "news"]
    assert (news.state, news.due_at) == ("pending", T0 + timedelta(hours=12))


def test_decide_defers_with_the_cap_and_sends_without() -> None:
    from tests.test_decide import ask  # the pure decision, without a database

    cap = PerSpan(2, days(1))
    held = ask(cap=cap, recent=[T0 - H, T0 - 3 * H])
    assert held == Defer(T0 - 3 * H + days(1), Why.FREQUENCY_CAP, "frequency cap: 2 in 1d")
    assert isinstance(ask(cap=cap), Send)
    assert isinstance(ask(cap=cap, recent=[T0 - days(2), T0 - H]), Send)
    # no address: skipped at once rather than held by the cap
    assert isinstance(ask(cap=cap, recent=[T0, T0], lead=None), Skip)
    assert frequency_hold(PerSpan(1, H), [T0 - H], T0) is None  # left the window exactly now


@pytest.mark.parametrize(
    ("text", "count", "span"),
    [("2/1d", 2, days(1)), (" 1 / 12h ", 1, timedelta(hours=12)), ("5/1w", 5, days(7))],
)
def test_rates_parse(text: str, count: int, span: timedelta) -> None:
    assert parse_per_span(text) == PerSpan(count, span)


@pytest.mark.parametrize("bad", ["2", "0/1d", "x/1d", "2/0d", "2/1y", "/1d", "-1/1d"])
def test_check_refuses_a_bad_max_per_lead_at_its_key(
    tmp_path: Path, cli: Callable[..., Result], bad: str
) -> None:
    capped_text = campaign_toml(tz="UTC", region=None) + THREE_STEPS
    text = capped_text.replace("[settings]\n", f'[settings]\nmax_per_lead = "{bad}"\n', 1)
    (tmp_path / "campaigns.toml").write_text(text)
    res = cli("-C", tmp_path, "check", "--format", "json")
    assert res.exit_code == 1, res.output
    problems = [p for p in json.loads(res.stdout)["problems"] if p["severity"] == "error"]
    assert [p["path"] for p in problems] == ["settings.max_per_lead"]
    assert problems[0]["line"] == 2
    assert "rate" in problems[0]["message"]
    res = cli("-C", tmp_path, "send")
    assert res.exit_code != 0
    assert "settings.max_per_lead" in res.stderr
    assert "Traceback" not in res.stderr


def test_send_summary_counts_the_messages_the_cap_holds(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    cfg = capped(tmp_path, TWO_CAMPAIGNS, "1/1d")
    add_leads(Store.for_config(cfg), 2)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    assert "sent 2," in res.stdout
    assert "4 by frequency cap" in res.stdout
