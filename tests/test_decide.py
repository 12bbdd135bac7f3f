"""`engine.decide`: what to do with one due message, without a database, a channel or a clock."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from campaignctl.config import Campaign, Step, Variant
from campaignctl.engine.decide import (
    ACTIVE,
    ALWAYS_OPEN,
    Defer,
    Send,
    Skip,
    Why,
    choose_variant,
    decide,
)
from campaignctl.pacing import Hours
from campaignctl.render import choose_variant as render_choose_variant
from campaignctl.timespec import parse_window
from tests.support import T0


@dataclass
class Lead:
    id: int = 1
    email: str | None = "ana@example.com"
    phone: str | None = "+639171234567"
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Manila"))


CAMP = Campaign(
    status="active",
    stop_on=["optout"],
    steps=[
        Step(name="hello", channel="email"),
        Step(
            name="offer",
            channel="email",
            variants=[Variant(name="A", weight=1), Variant(name="B", weight=3)],
        ),
    ],
)


def ask(step: str = "hello", **kw: object) -> object:
    args: dict[str, object] = {
        "campaign_name": "c",
        "campaign": CAMP,
        "step_name": step,
        "channel": "email",
        "kind": "email",
        "lead": Lead(),
        "optouts": set(),
        "enrolment": ACTIVE,
        "hours": ALWAYS_OPEN,
        "now": T0,
    }
    return decide(**(args | kw))  # type: ignore[arg-type]


def test_a_due_message_is_sent_to_the_channels_address() -> None:
    assert ask() == Send("ana@example.com", None)
    assert ask(channel="sms", kind="sms") == Send("+639171234567", None)


def test_skips_in_order_with_their_reasons() -> None:
    assert ask(lead=None) == Skip(Why.LEAD_DELETED, "lead deleted")
    stopped = ask(enrolment=("stopped", "reply"), optouts={"email"})
    assert stopped == Skip(Why.ENROLMENT_STOPPED, "enrolment stopped: reply")
    assert ask(optouts={"*"}) == Skip(Why.OPTED_OUT, "opted out of email")
    assert ask(optouts={"sms"}) == Send("ana@example.com", None)
    assert ask(step="gone") == Skip(Why.STEP_REMOVED, "step removed from the campaign file")
    assert ask(lead=Lead(email=None)) == Skip(Why.NO_ADDRESS, "lead has no email address")


def test_a_suppressed_address_is_skipped_right_after_optouts_and_the_sequence_goes_on() -> None:
    listed = {"ana@example.com": {"*"}, "+639171234567": {"whatsapp"}}
    why = Skip(Why.SUPPRESSED, "address on the suppression list (email)")
    assert ask(suppressed=listed) == why
    assert ask(suppressed={"ana@example.com": {"email"}}) == why
    assert ask(suppressed={"ana@example.com": {"news"}}) == Send("ana@example.com", None)
    assert ask(channel="sms", kind="sms", suppressed=listed) == Send("+639171234567", None)
    # opt-outs say it first; the suppression list before the step, the window, the variant
    assert ask(optouts={"*"}, suppressed=listed) == Skip(Why.OPTED_OUT, "opted out of email")
    assert ask(step="gone", suppressed=listed) == why
    closed = Hours(parse_window("10:00-11:00"), None)
    assert ask(hours=closed, suppressed=listed) == why
    assert why.next_step_follows(CAMP)  # even when the campaign stops on optout


def test_a_closed_window_defers_to_its_next_opening_in_the_leads_zone() -> None:
    hours = Hours(parse_window("10:00-11:00"), None)  # T0 is 09:00 in Manila
    got = ask(hours=hours)
    assert isinstance(got, Defer)
    assert got.why is Why.WINDOW
    assert got.reason == "outside the sending window"
    assert got.until.astimezone(ZoneInfo("Asia/Manila")).hour == 10


def test_the_next_step_follows_a_missing_address_and_an_optout_without_stop_on() -> None:
    no_address = Skip(Why.NO_ADDRESS, "lead has no email address")
    optout = Skip(Why.OPTED_OUT, "opted out of email")
    assert no_address.next_step_follows(CAMP)
    assert not optout.next_step_follows(CAMP)
    assert optout.next_step_follows(CAMP.model_copy(update={"stop_on": []}))
    assert not Skip(Why.ENROLMENT_STOPPED, "enrolment stopped").next_step_follows(CAMP)


def test_the_variant_is_the_stable_hash_the_renderer_used() -> None:
    variants = CAMP.steps[1].variants
    for lead_id in range(200):
        want = render_choose_variant(variants, "c", "offer", lead_id)
        assert want is not None
        assert ask(step="offer", lead=Lead(id=lead_id)) == Send("ana@example.com", want.name)
    picks = [choose_variant(variants, "c", "offer", i) for i in range(4000)]
    share_b = sum(1 for v in picks if v is not None and v.name == "B") / len(picks)
    assert 0.70 < share_b < 0.80


def test_decide_reads_no_store_no_channel_and_no_clock() -> None:
    import campaignctl.engine.decide as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not [m for m in imported if m.startswith(("campaignctl.store", "campaignctl.channels"))]
    assert "time" not in imported
    assert "random" not in imported
    assert ".now(" not in Path(mod.__file__).read_text()
