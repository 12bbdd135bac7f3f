"""One rule for suppression: the same opt-out has the same effects whichever door it comes in by.

The doors: an inbound STOP recorded by `sync`, Twilio's 21610 ("the recipient opted out")
refusing a send, and `campaignctl leads optout`. Ana is in three campaigns: `welcome` (its SMS is
the one being sent) and `promo` stop on optout, `news` stops on replies only.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from campaignctl import suppression
from campaignctl.channels.base import ChannelError, ErrorKind
from campaignctl.classify import Known, classify_twilio
from campaignctl.engine import Engine
from campaignctl.inbound import record
from campaignctl.store import Enrolment, Event, OptOut, Store
from tests.support import T0, ScriptedChannel, add_leads, messages, project

PHONE = "+12125550000"
CHANNELS = """
[channels.email]
provider = "outbox"

[channels.sms]
provider = "outbox"
kind = "sms"
"""

CAMPAIGNS = (
    CHANNELS
    + """
[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name }}"
[[campaigns.welcome.steps]]
name = "after"
channel = "email"
delay = "1d"
subject = "Still there?"
body = "Hi again"

[campaigns.promo]
status = "active"
[[campaigns.promo.steps]]
name = "offer"
channel = "email"
delay = "3d"
subject = "An offer"
body = "For you"

[campaigns.news]
status = "active"
stop_on = ["reply"]
[[campaigns.news.steps]]
name = "issue"
channel = "sms"
delay = "3d"
body = "News"
"""
)


def _inbound_stop(folder: Path, cli: Any) -> None:
    cfg = project(folder, CAMPAIGNS)
    store = Store.for_config(cfg)
    stop = {"sid": "SMin1", "direction": "inbound", "from": PHONE, "body": "STOP"}
    item = classify_twilio(stop, channel="sms", known=Known(), now=T0)
    assert item is not None
    with store.write() as s:
        record(s, [item], stop_on=suppression.stop_on_of(cfg), now=T0)
    store.close()


def _twilio_21610(folder: Path, cli: Any) -> None:
    cfg = project(folder, CAMPAIGNS)
    store = Store.for_config(cfg)
    refused = ChannelError(ErrorKind.OPTED_OUT, "recipient has opted out", code="21610")
    channels = {"sms": ScriptedChannel("sms", errors={PHONE: [refused]})}
    res = Engine(cfg, store, channels=channels).run_pass(T0, random.Random(1))
    assert res.total("failed") == 1
    store.close()


def _leads_optout(folder: Path, cli: Any) -> None:
    r = cli("-C", folder, "leads", "optout", PHONE, "--channel", "sms")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("door", "source"),
    [(_inbound_stop, "keyword"), (_twilio_21610, "provider"), (_leads_optout, "manual")],
    ids=["inbound-stop", "twilio-21610", "leads-optout"],
)
def test_an_sms_opt_out_has_the_same_effects_through_every_door(
    tmp_path: Path, cli: Any, door: Any, source: str
) -> None:
    cfg = project(tmp_path, CAMPAIGNS)
    store = Store.for_config(cfg)
    (ana,) = add_leads(store, 1)
    Engine(cfg, store).enrol(T0)  # hello (sms) due now; offer and issue in three days
    store.close()

    door(tmp_path, cli)

    store = Store.for_config(cfg)
    with store.read() as s:
        optouts = {(o.lead_id, o.channel, o.source) for o in s.exec(select(OptOut))}
        enrolments = {e.campaign: (e.state, e.reason) for e in s.exec(select(Enrolment))}
    rows = {(m.campaign, m.step): (m.state, m.reason) for m in messages(store)}
    store.close()
    assert optouts == {(ana, "sms", source)}
    # Every campaign that stops on optout stops, not only the one whose message was refused.
    assert enrolments == {
        "welcome": ("stopped", "optout"),
        "promo": ("stopped", "optout"),
        "news": ("active", None),
    }
    # The refused SMS failed; through the other doors it was still pending, and is skipped.
    hello = rows.pop(("welcome", "hello"))
    assert hello[0] == ("failed" if source == "provider" else "skipped")
    # A campaign that goes on keeps its pending SMS, whatever the door: the engine skips it when
    # it comes due and moves the sequence on (skipping it here would stall the sequence).
    assert rows == {
        ("promo", "offer"): ("skipped", "sequence stopped: optout"),
        ("news", "issue"): ("pending", None),
    }
    store = Store.for_config(cfg)
    Engine(cfg, store, channels={"sms": ScriptedChannel("sms")}).run_pass(
        T0 + timedelta(days=4), random.Random(1)
    )
    with store.read() as s:
        news = {e.campaign: e.state for e in s.exec(select(Enrolment))}["news"]
    issue = {(m.campaign, m.step): (m.state, m.reason) for m in messages(store)}["news", "issue"]
    store.close()
    assert issue == ("skipped", "opted out of sms")
    assert news == "completed"  # moved past its last step, not left active for ever


def test_opt_in_and_bounce_each_in_their_own_transaction(tmp_path: Path) -> None:
    cfg = project(tmp_path, CAMPAIGNS)
    store = Store.for_config(cfg)
    (ana,) = add_leads(store, 1)
    Engine(cfg, store).enrol(T0)
    stop_on = suppression.stop_on_of(cfg)

    done = suppression.opt_out(store, ana, "sms", source="keyword", now=T0, stop_on=stop_on)
    assert (done.stopped, done.skipped) == (2, 2)  # news keeps its SMS for the engine to skip
    suppression.opt_in(store, ana, "sms")
    again = suppression.bounce(store, ana, "email", code="5.1.1", now=T0, stop_on=stop_on)
    assert (again.stopped, again.skipped) == (0, 0)  # news does not stop on bounce
    with store.read() as s:
        assert {(o.channel, o.source) for o in s.exec(select(OptOut))} == {("email", "bounce")}
        assert list(s.exec(select(Event))) == []  # effects only: events are the doors' to record
    store.close()


def _names_used(path: Path) -> set[str]:
    """Every imported module and every attribute or name called in `path`."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
    return out


def test_only_suppression_writes_opt_outs_and_classification_reads_no_store() -> None:
    from tests.support import REPO

    package = REPO / "campaignctl"
    writes = {"add_optout", "remove_optout"}
    writers = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.parent.name != "store" and writes & _names_used(p)
    )
    assert writers == ["suppression.py"]
    classify = _names_used(package / "classify.py")
    assert not {n for n in classify if n.startswith(("campaignctl.store", "campaignctl.supp"))}


BATCH = (
    CHANNELS
    + """
[campaigns.a]
status = "active"
[[campaigns.a.steps]]
name = "mail"
channel = "email"
subject = "Hi"
body = "Hi"
[[campaigns.a.steps]]
name = "text"
channel = "sms"
delay = "1d"
body = "Hi"

[campaigns.b]
status = "active"
[[campaigns.b.steps]]
name = "hello"
channel = "sms"
body = "Hi"
"""
)


def test_a_provider_opt_out_lands_after_the_batch_s_other_outcomes(tmp_path: Path) -> None:
    """In one batch, campaign a's email fails for good and campaign b's SMS meets 21610: a ends
    for its own failure, not for the opt-out recorded after it."""
    cfg = project(tmp_path, BATCH)
    store = Store.for_config(cfg)
    add_leads(store, 1)
    refused = ChannelError(ErrorKind.OPTED_OUT, "recipient has opted out", code="21610")
    bounced = ChannelError(ErrorKind.PERMANENT, "mailbox unavailable", code="550")
    (email,) = _emails(store)
    channels = {
        "sms": ScriptedChannel("sms", errors={PHONE: [refused]}),
        "email": ScriptedChannel("email", errors={email: [bounced]}),
    }
    Engine(cfg, store, channels=channels).run_pass(T0, random.Random(1))
    with store.read() as s:
        enrolments = {e.campaign: (e.state, e.reason) for e in s.exec(select(Enrolment))}
    store.close()
    assert enrolments == {"a": ("stopped", "step mail failed"), "b": ("stopped", "optout")}


def _emails(store: Store) -> list[str]:
    from campaignctl.store import Lead

    with store.read() as s:
        return [lead.email for lead in s.exec(select(Lead)) if lead.email]
