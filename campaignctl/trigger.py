"""`campaignctl trigger`: one event enrols the leads a trigger campaign's audience picks.

The event is a JSON object with an `id`; the audience and the templates see it as `item`. In
the audience, `item.X` is replaced by the event's value as a constant before the expression is
translated, so `lead.budget_max >= item.price and item.city in lead.areas` is still picked in
SQL. The event is recorded (`store.triggers`) in the write transaction that enrols its
matches: the unique (campaign, event id) row makes a second delivery of the same event, even
from another process at the same moment, enrol nobody. Each match gets the first step's
message for this event (`message.trigger_event`); `send` and the daemon send it as any other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campaignctl.config import Config
from campaignctl.errors import UsageError
from campaignctl.store import Store


@dataclass
class TriggerResult:
    campaign: str
    event_id: str
    enrolled: int = 0
    #: set when the event id was received before: (when, how many it enrolled then)
    duplicate: tuple[datetime, int] | None = None
    dry_run: bool = False
    #: a dry run's first leads: (id, email, phone)
    sample: list[tuple[int, str | None, str | None]] = field(default_factory=list)


def parse_event(text: str, source: str) -> dict[str, Any]:
    """The event, or a UsageError naming what is wrong with it (and where, for bad JSON)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source}: not JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
            'an event looks like: {"id": "listing-42", "price": 350000}',
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{source}: the event must be a JSON object, not {_json_kind(data)}",
            'an event looks like: {"id": "listing-42", "price": 350000}',
        )
    if "id" not in data:
        raise UsageError(f'{source}: the event has no "id" (each event needs one, to be sent once)')
    ident = data["id"]
    if isinstance(ident, bool) or not isinstance(ident, str | int) or ident == "":
        raise UsageError(
            f'{source}: the event\'s "id" must be a non-empty string or an integer, '
            f"not {_json_kind(ident)}"
        )
    return data


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    return "a number"


def event_key(event: dict[str, Any]) -> str:
    """The event's id as stored: 42 and "42" are the same event."""
    return str(event["id"])


def with_item(expr: str | None, item: dict[str, Any], where: str) -> str | None:
    """The audience with `item` and each `item.X` / `item['X']` replaced by the event's value as
    a constant; a UsageError when the audience reads a key the event does not have."""
    if expr is None or "item" not in expr:
        return expr
    from jinja2.sandbox import SandboxedEnvironment

    tokens = [(t, v) for _, t, v in SandboxedEnvironment().lex(f"{{{{ {expr} }}}}")]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        previous = next((v for t, v in reversed(tokens[:i]) if t != "whitespace"), "")
        if kind != "name" or value != "item" or previous == ".":
            out.append(value)
            i += 1
            continue
        j = i + 1
        key: str | None = None
        if j + 1 < len(tokens) and tokens[j][1] == "." and tokens[j + 1][0] == "name":
            key, j = tokens[j + 1][1], j + 2
        elif (
            j + 2 < len(tokens)
            and tokens[j][1] == "["
            and tokens[j + 1][0] == "string"
            and tokens[j + 2][1] == "]"
        ):
            key, j = json.loads(_double_quoted(tokens[j + 1][1])), j + 3
        if key is None:
            out.append(_literal(item))
        elif key not in item:
            raise UsageError(
                f"the event has no {key!r}: {where} reads item.{key}",
                f"add {key!r} to the event, or change the audience",
            )
        else:
            out.append(_literal(item[key]))
        i = j
    text = "".join(out)
    return text[2:-2].strip()


def _double_quoted(token: str) -> str:
    return token if token.startswith('"') else json.dumps(token[1:-1])


def _literal(value: Any) -> str:
    """A JSON value as a Jinja literal: null is `none`; strings, numbers, lists and objects
    as JSON writes them (Jinja reads those the same way)."""
    return f"({_jinja(value)})"


def _jinja(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"the event holds {value}: numbers in an event must be finite")
    if isinstance(value, list):
        return "[" + ", ".join(_jinja(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_jinja(str(k))}: {_jinja(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=True)


def run(
    cfg: Config,
    store: Store,
    campaign: str,
    event: dict[str, Any],
    now: datetime,
    *,
    dry_run: bool = False,
    limit: int = 10,
) -> TriggerResult:
    """Record `event` for `campaign` and enrol its matches (or, `dry_run`, only say who)."""
    from campaignctl.engine import Engine

    camp = cfg.campaign(campaign)
    if camp.kind != "trigger":
        raise UsageError(
            f'{cfg.path}: campaign {campaign!r} is a {camp.kind}; trigger is for kind = "trigger"'
        )
    if not camp.steps:
        raise UsageError(f"{cfg.path}: campaign {campaign!r} has no steps")
    if camp.status != "active" and not dry_run:
        raise UsageError(
            f"{cfg.path}: campaign {campaign!r} is {camp.status}; events enrol only in an "
            "active campaign",
            f"campaignctl campaign start {campaign}",
        )
    audience = with_item(camp.audience, event, f"campaigns.{campaign}.audience")
    engine = Engine(cfg, store)
    key = event_key(event)
    return engine.enrol_event(campaign, camp, key, event, audience, now, dry_run, limit)
