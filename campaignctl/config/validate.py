"""Validating the campaign file: every problem at once, each with its key path and line.

`validate_text()` is what `check` and the editor call, because they want the list of problems
rather than an exception. Key paths look like `campaigns.welcome.steps[1].channel` (array
indexes count from 0).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from campaignctl.config.locator import format_loc, line_of, locate_keys
from campaignctl.config.model import NAME_RE, Config, Step, infer_kind, use_providers
from campaignctl.errors import ConfigError, Problem
from campaignctl.lead_events import ENROL_ON_FORMS, enrol_on_event


def did_you_mean(name: str, choices: Any) -> str:
    """`; did you mean 'welcome'?` when a close name exists, else ''."""
    import difflib

    close = difflib.get_close_matches(name, [str(c) for c in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """tomllib with its syntax errors turned into a `file:line:col` one-liner."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = f"{path}:{m.group(1)}:{m.group(2)}" if m else str(path)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg).rstrip(".")
        raise ConfigError(
            [
                Problem(
                    "",
                    f"TOML syntax error: {reason}" + (f" (column {m.group(2)})" if m else ""),
                    line=int(m.group(1)) if m else None,
                    file=path,
                )
            ],
            hint=f"fix the syntax at {where}",
        ) from None


def validate_text(
    text: str, path: Path, *, remainder: bool = False
) -> tuple[Config | None, list[Problem]]:
    """Parse and validate; a syntax error comes back as a single problem."""
    try:
        data = parse_toml(text, path)
    except ConfigError as exc:
        return None, exc.problems
    return validate_data(data, path, text, remainder=remainder)


def validate_data(
    data: dict[str, Any], path: Path, text: str = "", *, remainder: bool = False
) -> tuple[Config | None, list[Problem]]:
    """Validate parsed TOML. Returns the config (None if unusable) and every problem found.

    When some keys are refused (unknown, or a value of the wrong shape), the rest of the file
    is still checked: the refused keys are left out and the cross-key rules run on what
    remains, so a typo'd key and a bad reference show in one run. With `remainder`, that
    remainder comes back as the config (for `check` to render); otherwise it is None.
    """
    use_providers()
    lines = locate_keys(text) if text else {}
    problems: list[Problem] = []
    refused: set[str] = set()
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            key = format_loc(_data_loc(err["loc"]))
            problems.append(Problem(key, _message(err), line=line_of(key, lines), file=path))
        rest, refused = _remainder(data, exc.errors())
        if rest is None:
            return None, problems
        rest._path = path
        problems.extend(_unrelated(semantic_problems(rest, lines), refused))
        return (rest if remainder else None), problems
    cfg._path = path
    problems.extend(semantic_problems(cfg, lines))
    return cfg, problems


def _data_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    from campaignctl.channels.registry import providers

    # pydantic puts the union tag in the location: channels.sms.twilio.from
    if len(loc) > 2 and loc[0] == "channels" and loc[2] in providers():
        return loc[:2] + loc[3:]
    return loc


#: How an unknown key's problem starts; `check` still renders a step that has one.
UNKNOWN_KEY = "unknown key"


def is_unknown_key(problem: Problem) -> bool:
    """Whether a problem is only an unknown key (the rest of its table was still validated)."""
    return problem.message.startswith(UNKNOWN_KEY)


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        loc = err["loc"]
        known = _known_keys(loc[:-1])
        return f"{UNKNOWN_KEY} (a typo here would silently change behaviour)" + did_you_mean(
            str(loc[-1]), known
        )
    if kind == "missing":
        return "required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        from campaignctl.channels.registry import (
            broken_message,
            providers,
            unknown_provider_message,
        )

        names = list(providers())
        if kind == "union_tag_invalid":
            named = err["input"].get("provider")
            return broken_message(named) or unknown_provider_message(named, names)
        return f"required key 'provider' is missing ({', '.join(names[:-1])} or {names[-1]})"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _bare(ann: Any) -> Any:
    """`X` from `Annotated[X, ...]` and `X | None`."""
    import types
    import typing

    while True:
        if typing.get_origin(ann) is Annotated:
            ann = typing.get_args(ann)[0]
        elif typing.get_origin(ann) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) != 1:
                return ann
            ann = args[0]
        else:
            return ann


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at a pydantic error location accepts (union tags included)."""
    import types
    import typing

    node: Any = Config
    for part in loc:
        node = _bare(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            fields = {(f.alias or n): f.annotation for n, f in node.model_fields.items()}
            node = fields.get(str(part))
        elif typing.get_origin(node) in (list, dict):
            node = typing.get_args(node)[-1]
        elif typing.get_origin(node) in (typing.Union, types.UnionType):
            tagged = [
                m
                for m in typing.get_args(node)
                if part in typing.get_args(m.model_fields["provider"].annotation)
            ]
            node = tagged[0] if tagged else None
        if node is None:
            return []
    node = _bare(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return []


def _remainder(data: dict[str, Any], errors: list[Any]) -> tuple[Config | None, set[str]]:
    """The config without the keys pydantic refused, and the key paths of refused values.

    An unknown key is simply left out. A bad value is left out too (its default applies), a
    missing required key takes its table along, and a bad list element takes its list (the
    indexes of the others must not shift). None when the document itself is unusable.
    """
    import copy

    pruned = copy.deepcopy(data)
    refused: set[str] = set()
    for _ in range(5):  # each round can only remove more; a few rounds always settle
        for err in errors:
            loc = _data_loc(err["loc"])
            if err["type"] == "missing":
                loc = loc[:-1]
            while loc and isinstance(loc[-1], int):
                loc = loc[:-1]
            if not loc:
                return None, refused
            _delete(pruned, loc)
            if err["type"] != "extra_forbidden" or loc != _data_loc(err["loc"]):
                refused.add(format_loc(loc))
        try:
            cfg = Config.model_validate(pruned)
        except ValidationError as exc:
            errors = exc.errors()
            continue
        # a step on a refused channel would only report that channel again
        for cname, camp in cfg.campaigns.items():
            for i, step in enumerate(camp.steps):
                if refused & {"channels", f"channels.{step.channel}"}:
                    refused.add(f"campaigns.{cname}.steps[{i}]")
        return cfg, refused
    return None, refused


def _delete(data: Any, loc: tuple[int | str, ...]) -> None:
    for part in loc[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(data, dict):
        data.pop(loc[-1], None)


def _unrelated(problems: list[Problem], refused: set[str]) -> list[Problem]:
    """Cross-key problems, without those about a refused value's place (its default stands in
    there, so they would only repeat the refusal or report the default)."""

    def near(p: str, q: str) -> bool:
        return p == q or p.startswith((q + ".", q + "[")) or q.startswith((p + ".", p + "["))

    return [p for p in problems if not any(near(p.path, q) for q in refused)]


def semantic_problems(cfg: Config, lines: dict[str, int] | None = None) -> list[Problem]:
    """Rules that span keys: names, references, limits, step contents, template files."""
    from campaignctl.channels.registry import get

    lines = lines or {}
    out: list[Problem] = []

    def add(path: str, msg: str, severity: str = "error") -> None:
        out.append(Problem(path, msg, severity, line_of(path, lines), cfg.path))

    if cfg.settings.default_region is not None:
        import phonenumbers

        if cfg.settings.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            add(
                "settings.default_region",
                f"unknown region {cfg.settings.default_region!r}: "
                "use an ISO 3166 two-letter code such as 'PH' or 'US'",
            )
    for name, ch in cfg.channels.items():
        base = f"channels.{name}"
        if not NAME_RE.fullmatch(name):
            add(base, "channel names use letters, digits, '-' and '_'")
        kind = infer_kind(name, ch)
        if kind is None:
            add(
                f"{base}.kind",
                "cannot tell whether this is an email, sms or whatsapp channel: "
                'set kind = "email" | "sms" | "whatsapp"',
            )
        elif kind not in get(ch.provider).kinds:
            add(f"{base}.kind", f"provider {ch.provider!r} cannot send {kind}")
        if ch.daily_limit and ch.hourly_limit and ch.hourly_limit > ch.daily_limit:
            add(
                f"{base}.hourly_limit",
                f"hourly_limit ({ch.hourly_limit}) exceeds daily_limit ({ch.daily_limit})",
            )
        _warmup_problems(ch, base, add)
        rules = get(ch.provider).problems
        for key, msg, severity in rules(ch) if rules else ():
            add(f"{base}.{key}", msg, severity)

    for cname, camp in cfg.campaigns.items():
        base = f"campaigns.{cname}"
        if not NAME_RE.fullmatch(cname):
            add(base, "campaign names use letters, digits, '-' and '_'")
        if camp.status == "active" and not camp.steps:
            add(f"{base}.steps", "an active campaign needs at least one step")
        if camp.kind == "trigger" and not camp.steps:
            add(f"{base}.steps", "a trigger campaign needs at least one step")
        if camp.enrol_on and camp.kind != "sequence":
            add(f"{base}.enrol_on", f"enrol_on is for sequences; this campaign is a {camp.kind}")
        for i, event in enumerate(camp.enrol_on):
            if enrol_on_event(event) is None:
                add(
                    f"{base}.enrol_on[{i}]",
                    f"unknown event {event!r}: use {ENROL_ON_FORMS}",
                )
        if camp.reenrol and not camp.enrol_on:
            add(
                f"{base}.reenrol",
                "reenrol applies to enrol_on events: set enrol_on too, or remove reenrol",
            )
        seen: dict[str, int] = {}
        for i, step in enumerate(camp.steps):
            sp = f"{base}.steps[{i}]"
            if not step.name:
                step.name = f"step{i + 1}"
            if step.name in seen:
                add(
                    f"{sp}.name",
                    f"step name {step.name!r} is already used by steps[{seen[step.name]}]",
                )
            seen.setdefault(step.name, i)
            if step.channel not in cfg.channels:
                add(
                    f"{sp}.channel",
                    f"no channel named {step.channel!r} in [channels]"
                    f"{did_you_mean(step.channel, cfg.channels)}",
                )
                continue
            kind = infer_kind(step.channel, cfg.channels[step.channel])
            _step_content_problems(cfg, step, sp, kind, add)
            _ab_problems(cfg, step, sp, kind, add)
    return out


def _ab_problems(cfg: Config, step: Step, sp: str, kind: str | None, add: Any) -> None:
    """An `ab` table needs two variants at least and a fallback among them. Weights are
    relative shares (each above 0, checked on the variant): they need not add up to 1 or 100.
    `click_rate` needs tracked clicks, which only emails have."""
    ab = step.ab
    if ab is None:
        return
    if len(step.variants) < 2:
        add(
            f"{sp}.ab",
            "an A/B test needs two variants at least on its step "
            f"(it has {len(step.variants)}): add [[...steps.variants]] tables",
        )
        return
    names = [v.name for v in step.variants]
    if ab.fallback not in names:
        add(
            f"{sp}.ab.fallback",
            f"fallback {ab.fallback!r} is not a variant of this step "
            f"({', '.join(names)}){did_you_mean(ab.fallback, names)}",
        )
    elif any(v.name == ab.fallback and v.status == "draft" for v in step.variants):
        add(f"{sp}.ab.fallback", f"fallback {ab.fallback!r} is a draft, which is never sent")
    live = [v for v in step.variants if v.status != "draft"]
    if len(live) < 2:
        add(
            f"{sp}.ab",
            f"only {len(live)} variant is not a draft: the test compares nothing, "
            "and the fallback wins",
            "warning",
        )
    if ab.metric == "click_rate" and kind != "email":
        add(
            f"{sp}.ab.metric",
            f"click_rate counts tracked clicks, which only emails have (this step sends "
            f"{kind or 'no email'}): use reply_rate or delivery_rate",
        )
    elif ab.metric == "click_rate" and not (cfg.server and cfg.server.track_clicks):
        add(
            f"{sp}.ab.metric",
            "click_rate counts tracked clicks, and clicks are not tracked: "
            "set track_clicks = true in [server] (docs/web.md), or use reply_rate",
        )


def _warmup_problems(ch: Any, base: str, add: Any) -> None:
    """A channel's `warmup` ramps up to its `daily_limit`: it needs one, and starts below it."""
    w = ch.warmup
    if w is None:
        return
    if not ch.daily_limit:
        add(f"{base}.warmup", "warmup needs daily_limit: the limit it ramps up to")
    if w.start < 1:
        add(f"{base}.warmup.start", f"must be at least 1 (got {w.start})")
    elif ch.daily_limit and w.start >= ch.daily_limit:
        add(
            f"{base}.warmup.start",
            f"must be below daily_limit ({ch.daily_limit}): the ramp starts at {w.start}",
        )
    if w.days < 1:
        add(f"{base}.warmup.days", f"must be at least 1 (got {w.days})")


def _template_file_problem(cfg: Config, name: str, key: str, add: Any) -> None:
    try:
        path = cfg.template_path(name)
    except ValueError as exc:
        add(key, str(exc))
        return
    if not path.is_file():
        add(key, f"template file {name!r} not found (looked in {path})")


def _attachment_problems(cfg: Config, step: Step, sp: str, kind: str | None, add: Any) -> None:
    """Attachments on an email step only; each literal path inside the project and a file (a
    templated one is resolved per sample lead by `check`, and per lead when sent)."""
    if step.attachments and kind not in ("email", None):
        add(f"{sp}.attachments", f"attachments are for email steps; {kind} messages carry none")
        return
    for j, name in enumerate(step.attachments):
        key = f"{sp}.attachments[{j}]"
        if "{{" in name or "{%" in name:
            continue
        try:
            path = cfg.attachment_path(name)
        except ValueError as exc:
            add(key, str(exc))
            continue
        if not path.is_file():
            add(key, f"attachment file {name!r} not found (looked in {path})")


def _step_content_problems(cfg: Config, step: Step, sp: str, kind: str | None, add: Any) -> None:
    sources = [k for k in ("body", "template") if getattr(step, k)]
    if len(sources) > 1:
        add(f"{sp}.template", "give either 'body' or 'template', not both")
    has_content = bool(sources) or bool(step.content_sid)
    if step.variants:
        for j, var in enumerate(step.variants):
            vp = f"{sp}.variants[{j}]"
            if var.body and var.template:
                add(f"{vp}.template", "give either 'body' or 'template', not both")
            if not (var.body or var.template or has_content):
                add(vp, "this variant has no 'body' or 'template', and neither has its step")
            if var.template:
                _template_file_problem(cfg, var.template, f"{vp}.template", add)
        names = [v.name for v in step.variants]
        if len(set(names)) != len(names):
            add(f"{sp}.variants", "variant names must be unique within a step")
        if not has_content and all(v.status == "draft" for v in step.variants):
            add(sp, "a step needs 'body' or 'template': its variants are drafts, never sent")
    elif not has_content:
        add(sp, "a step needs 'body' or 'template'")
    if step.template:
        _template_file_problem(cfg, step.template, f"{sp}.template", add)
    _attachment_problems(cfg, step, sp, kind, add)
    if kind == "email":
        # Drafts are never sent: the step's own subject goes when every variant is a draft.
        live = [v for v in step.variants if v.status != "draft"]
        variant_subjects = bool(live) and all(v.subject for v in step.variants)
        if not (step.subject or step.thread or variant_subjects):
            add(
                f"{sp}.subject",
                "an email step needs a 'subject' (or thread = true to reply in the thread)",
            )
        if step.content_sid:
            add(f"{sp}.content_sid", "content_sid is for WhatsApp steps")
    else:
        if step.subject:
            add(f"{sp}.subject", f"{kind} messages have no subject; it would be ignored", "warning")
        if step.thread:
            add(f"{sp}.thread", "thread is for email steps")
        if step.content_sid and kind != "whatsapp":
            add(f"{sp}.content_sid", "content_sid is for WhatsApp steps")
