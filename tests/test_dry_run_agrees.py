"""`send --dry-run` says exactly what the `send` after it does (issue 15 #5): the same counts
(sent, failed, skipped, deferred by limit and by window) and the same recipients, on a project
with a daily limit, a sending window, an opt-out, a lead without an address and a second step
that comes due in the same pass."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from typer.testing import Result

from campaignctl.clock import wall_clock
from campaignctl.engine import Engine
from campaignctl.store import Store
from tests.support import add_leads, messages, project

Cli = Callable[..., Result]

# The window is 11 hours long and the leads live 12 hours apart (UTC and UTC+12): whatever
# the hour the test runs, the leads of at least one zone are outside it.
CAMPAIGNS = """
[channels.email]
provider = "outbox"
daily_limit = 3

[channels.sms]
provider = "outbox"
kind = "sms"
window = "08:00-19:00"

[campaigns.welcome]
status = "active"
priority = 1
[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Hi {{ lead.first_name }}"
body = "Welcome, {{ lead.first_name }}"
[[campaigns.welcome.steps]]
name = "text"
channel = "sms"
delay = "0m"
body = "Text {{ lead.first_name }}"

[campaigns.promo]
status = "active"
priority = 2
[[campaigns.promo.steps]]
name = "offer"
channel = "sms"
body = "Offer {{ lead.first_name }}"
"""

#: the counts of `send --dry-run`'s last line and of `send`'s summary, in the same order
DRY = re.compile(
    r"dry run: would send (\d+), fail (\d+), skip (\d+); deferred (\d+) by limit, (\d+) by window"
)
REAL = re.compile(
    r"summary: sent (\d+), failed (\d+), skipped (\d+), .*deferred (\d+) by limit, "
    r"(\d+) by window"
)
ADDRESS = re.compile(r"(\+1212555\d{4}|\bl\d+@ex\.com)")


def _setup(tmp_path: Path) -> Store:
    """Eight leads enrolled two days ago, so every first message is due now: the claim decides
    them all (the window in each lead's zone, the limit, the addresses, the opt-outs)."""
    cfg = project(tmp_path, CAMPAIGNS)
    store = Store.for_config(cfg)
    leads = []
    for i in range(8):
        lead = {
            "email": f"l{i}@ex.com" if i != 0 else None,  # no email: `hello` is skipped
            "phone": f"+1212555{i:04d}",
            "first_name": f"N{i}",
            "timezone": "UTC" if i % 2 else "Etc/GMT-12",
        }
        leads.append(lead)
    add_leads(store, *leads)
    Engine(cfg, store).enrol(wall_clock() - timedelta(days=2))
    return store


def test_a_dry_run_reports_what_the_send_after_it_does(tmp_path: Path, cli: Cli) -> None:
    store = _setup(tmp_path)
    # after enrolment: its pending messages are skipped at once, the others still pending
    res = cli("-C", tmp_path, "leads", "optout", "l1@ex.com")
    assert res.exit_code == 0, res.stderr

    before = [(m.id, m.state, m.due_at) for m in messages(store)]
    dry = cli("-C", tmp_path, "send", "--dry-run", "--show", "all")
    assert dry.exit_code == 0, dry.stderr
    assert [(m.id, m.state, m.due_at) for m in messages(store)] == before  # nothing written
    found = DRY.search(dry.stdout)
    assert found, dry.stdout
    dry_counts = tuple(int(n) for n in found.groups())
    rows = [line for line in dry.stdout.splitlines() if ADDRESS.search(line)]
    would = Counter(
        ("email" if "email" in line else "sms", ADDRESS.findall(line)[0]) for line in rows
    )

    real = cli("-C", tmp_path, "send")
    assert real.exit_code == 0, real.stderr
    found = REAL.search(real.stdout)
    assert found, real.stdout
    real_counts = tuple(int(n) for n in found.groups())
    went = Counter((m.channel, m.recipient) for m in messages(store) if m.state == "sent")

    assert dry_counts == real_counts
    assert would == went
    sent, _, skipped, by_limit, by_window = real_counts
    # the case holds what it claims to: every kind of answer is there
    assert sent == sum(went.values())
    assert sent > 0
    assert not any(to in ("l1@ex.com", "+12125550001") for _, to in went)  # l1 opted out
    assert skipped >= 1  # l0 has no email
    assert by_limit > 0  # email's daily limit of 3
    assert by_window > 0  # sms outside the window in one of the zones
