"""The sending engine: one pass enrols, reconciles, claims, sends and records.

`send` (one run from cron or a terminal) and `daemon` drive the same `Engine.run_pass(now, rng)`
(`engine.core`); `campaignctl.runner` wraps it in an APScheduler loop. The database is the only
source of truth: a message is claimed (`sending`, with who and when) in a short BEGIN IMMEDIATE
transaction before its provider is called and recorded right after, so whatever the engine
forgets when it crashes, the next pass finds in the database. See docs/engine.md.

The names below are imported on first use: `plan` and `status` replay `engine.decide` and read
`engine.context`, and must not load the claim, send and recovery stages with their channels
(issue 15: small commands import only what they use; tests/test_startup.py holds it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaignctl.engine.context import BATCH as BATCH
    from campaignctl.engine.context import EngineContext as EngineContext
    from campaignctl.engine.context import LeadInfo as LeadInfo
    from campaignctl.engine.context import campaign_start as campaign_start
    from campaignctl.engine.context import ensure_utc as ensure_utc
    from campaignctl.engine.context import worker_alive as worker_alive
    from campaignctl.engine.context import worker_id as worker_id
    from campaignctl.engine.core import Engine as Engine
    from campaignctl.engine.enrol import AudienceMatcher as AudienceMatcher
    from campaignctl.engine.outcomes import Claimed as Claimed
    from campaignctl.engine.outcomes import Outcomes as Outcomes
    from campaignctl.engine.outcomes import gives_up as gives_up
    from campaignctl.engine.recovery import FOREIGN_CLAIM_TIMEOUT as FOREIGN_CLAIM_TIMEOUT
    from campaignctl.engine.recovery import RECONCILE_AGAIN as RECONCILE_AGAIN
    from campaignctl.engine.recovery import RECONCILE_BATCH as RECONCILE_BATCH
    from campaignctl.engine.recovery import RECONCILE_SINGLE as RECONCILE_SINGLE
    from campaignctl.engine.result import COUNTERS as COUNTERS
    from campaignctl.engine.result import PassResult as PassResult

_HOME = {
    "Engine": "core",
    **dict.fromkeys(
        ("BATCH", "EngineContext", "LeadInfo", "campaign_start", "ensure_utc"), "context"
    ),
    **dict.fromkeys(("worker_alive", "worker_id"), "context"),
    "AudienceMatcher": "enrol",
    **dict.fromkeys(("Claimed", "Outcomes", "gives_up"), "outcomes"),
    **dict.fromkeys(
        ("FOREIGN_CLAIM_TIMEOUT", "RECONCILE_AGAIN", "RECONCILE_BATCH", "RECONCILE_SINGLE"),
        "recovery",
    ),
    **dict.fromkeys(("COUNTERS", "PassResult"), "result"),
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
