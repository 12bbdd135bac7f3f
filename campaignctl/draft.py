"""`draft`: variants of a step written by a language model, added to the file as drafts.

The model is reached through Simon Willison's `llm` library (the optional extra
`campaignctl[ai]`), imported only here and only when a model is asked: `check`, `send` and
everything else never load it. What goes to the model: the step's text, the campaign's
description and audience, the merge fields the step uses, and the fields of at most
`MAX_SAMPLE_LEADS` sample leads (names, status, tags, attributes; never an email address or a
phone number). The model's provider sees those (docs/editing.md says so).

The reply is asked for as JSON (`schema=` where the model supports it) and read strictly: a
reply that is not N well-formed variants writes nothing. The variants are written by the
comment-preserving editor (`config.edit.add_variants`) with `status = "draft"`; the engine's
variant choice never picks a draft (`engine.decide.choose_variant`), and `check` refuses a draft
that drops a merge field or the opt-out wording of its step (`draft_problems`, and
`checks._check_step` for the rendered wording).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaignctl.errors import CampaignctlError, ExitCode, NotFoundError, SetupError, UsageError

if TYPE_CHECKING:
    from campaignctl.config import Config, Step
    from campaignctl.config.edit import Outcome

#: `--variants N` takes 1..MAX_VARIANTS.
MAX_VARIANTS = 10
#: At most this many sample leads' fields go to the model.
MAX_SAMPLE_LEADS = 5
#: Lead fields never sent to the model: contact details say nothing about the copy.
PRIVATE_FIELDS = ("email", "phone", "id")
#: Template names whose attributes are merge fields (`{{ lead.first_name }}`).
MERGE_ROOTS = ("lead", "item")

INSTALL_HINT = "install the model library: pip install 'campaignctl[ai]'"


class ModelUnreachableError(CampaignctlError):
    """The model's provider could not be reached: try again later (exit 75)."""

    exit_code = ExitCode.TEMPFAIL


@dataclass(frozen=True)
class Drafted:
    """One variant as the model wrote it (`body` is None for an email step)."""

    subject: str | None
    body: str | None


# ---------------------------------------------------------------- merge fields


def merge_fields(source: str) -> set[str]:
    """The merge fields a template uses: `lead.first_name`, `item.price` (by attribute or
    by constant subscript). Only parsed, never rendered; a template that does not parse has
    none here (check reports its syntax error)."""
    from jinja2 import Environment, TemplateSyntaxError, nodes

    try:
        tree = Environment().parse(source)
    except TemplateSyntaxError:
        return set()
    out = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name in MERGE_ROOTS:
            out.add(f"{node.node.name}.{node.attr}")
    for item in tree.find_all(nodes.Getitem):
        root, arg = item.node, item.arg
        if (
            isinstance(root, nodes.Name)
            and root.name in MERGE_ROOTS
            and isinstance(arg, nodes.Const)
            and isinstance(arg.value, str)
        ):
            out.add(f"{root.name}.{arg.value}")
    return out


def _file_text(cfg: Config, template: str) -> str:
    try:
        return cfg.template_path(template).read_text(encoding="utf-8")
    except (OSError, ValueError, UnicodeDecodeError):
        return ""  # check reports a missing or unreadable template on its own key


def step_texts(cfg: Config, step: Step, variant_name: str | None = None) -> dict[str, str]:
    """The subject and body sources a step sends (as a variant, when named: its own subject
    and body where it has them, the step's otherwise)."""
    var = next((v for v in step.variants if v.name == variant_name), None)
    subject = (var.subject if var and var.subject else None) or step.subject or ""
    if var and (var.body or var.template):
        body = var.body if var.body else _file_text(cfg, var.template or "")
    else:
        body = step.body if step.body else _file_text(cfg, step.template or "")
    return {"subject": subject, "body": body or ""}


def step_merge_fields(cfg: Config, step: Step, variant_name: str | None = None) -> set[str]:
    """Every merge field the step (or one of its variants) uses, subject and body together."""
    texts = step_texts(cfg, step, variant_name)
    return merge_fields(texts["subject"]) | merge_fields(texts["body"])


def draft_problems(cfg: Config, campaign: str, index: int, step: Step) -> list[tuple[str, str]]:
    """(key path, message) for each draft variant of a step that drops a merge field its
    step's own text uses. (The opt-out wording is checked on rendered text, in `checks`.)"""
    drafts = [(j, v) for j, v in enumerate(step.variants) if v.status == "draft"]
    if not drafts:
        return []
    base = step_merge_fields(cfg, step)
    out = []
    for j, var in drafts:
        missing = sorted(base - step_merge_fields(cfg, step, var.name))
        if missing:
            fields = ", ".join("{{ " + m + " }}" for m in missing)
            out.append(
                (
                    f"campaigns.{campaign}.steps[{index}].variants[{j}]",
                    f"draft variant {var.name!r} drops the merge field(s) {fields} that the "
                    "step's own text uses; put them back, or remove the draft with "
                    f"`campaignctl draft reject {campaign} {step.name} {var.name}`",
                )
            )
    return out


# ---------------------------------------------------------------- what the model is asked


def sample_leads(cfg: Config, campaign: str, kind: str) -> list[dict[str, Any]]:
    """At most `MAX_SAMPLE_LEADS` leads in the campaign's audience that the step's channel
    reaches (database, else built-in samples), without their contact details."""
    from campaignctl.audience import AudienceError, compile_audience
    from campaignctl.samples import SAMPLE_LIMIT, builtin_samples, database_samples, reachable

    try:
        matches = compile_audience(
            cfg.campaigns[campaign].audience, f"campaigns.{campaign}.audience"
        )
    except AudienceError:
        return []
    chosen = []
    for lead in database_samples(cfg, SAMPLE_LIMIT) or builtin_samples():
        try:
            ok = reachable(lead, kind) and matches(lead)
        except AudienceError:
            continue
        if ok:
            chosen.append({k: v for k, v in lead.items() if k not in PRIVATE_FIELDS})
        if len(chosen) >= MAX_SAMPLE_LEADS:
            break
    return chosen


SYSTEM = (
    "You write outreach message variants for an A/B test. Templates use Jinja syntax. Keep "
    "every merge field exactly as written in the original (for example "
    "{{ lead.first_name | default('there') }}), keep any opt-out wording (such as 'Reply STOP "
    "to opt out'), and invent no facts, prices or links. Reply with JSON only."
)


def build_prompt(
    cfg: Config,
    campaign: str,
    step: Step,
    n: int,
    leads: list[dict[str, Any]],
    extra: str | None = None,
) -> str:
    """The prompt: the step, its campaign, the merge fields, sample leads, and the reply's shape."""
    kind = cfg.channel_kind(step.channel)
    camp = cfg.campaigns[campaign]
    texts = step_texts(cfg, step)
    fields = sorted(step_merge_fields(cfg, step))
    want = "subject" if kind == "email" else "body"
    lines = [
        f"Write {n} alternative {want}s for this {kind} message of the campaign {campaign!r}.",
        f"Campaign description: {camp.description or '(none)'}",
        f"Audience (who receives it): {camp.audience or 'every lead'}",
    ]
    if kind == "email":
        lines.append(f"Current subject: {texts['subject']}")
        lines.append(f"Body (for context; it stays as it is):\n{texts['body']}")
    else:
        lines.append(f"Current body:\n{texts['body']}")
    lines.append(
        "Merge fields it uses (keep each one): " + (", ".join(fields) if fields else "(none)")
    )
    if leads:
        lines.append("Sample leads (what the merge fields hold):")
        lines.extend(json.dumps(lead, ensure_ascii=False, default=str) for lead in leads)
    if extra:
        lines.append(f"Instructions: {extra}")
    item = '{"subject": "..."}' if kind == "email" else '{"body": "..."}'
    lines.append(f'Reply with JSON only: {{"variants": [{item}, ...]}} with exactly {n} items.')
    if kind == "email":
        lines.append("Each subject is one line.")
    return "\n".join(lines)


def schema(kind: str) -> dict[str, Any]:
    """The JSON schema of the reply, for models that support structured output."""
    key = "subject" if kind == "email" else "body"
    return {
        "type": "object",
        "properties": {
            "variants": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {key: {"type": "string"}},
                    "required": [key],
                },
            }
        },
        "required": ["variants"],
    }


def parse_reply(text: str, n: int, kind: str, model: str) -> list[Drafted]:
    """N variants from the model's reply: a JSON object `{"variants": [...]}` (or a bare list),
    possibly inside a code fence or after some words. Anything else raises UsageError."""

    def bad(why: str) -> UsageError:
        return UsageError(
            f"model {model!r} replied with unusable output ({why}); nothing was written",
            "run it again, or try another model with --model (see `llm models`)",
        )

    decoder = json.JSONDecoder()
    data: Any = None
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                data, _ = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                continue
            break
    if isinstance(data, dict):
        data = data.get("variants")
    if not isinstance(data, list):
        raise bad("no JSON list of variants")
    key = "subject" if kind == "email" else "body"
    out = []
    for k, item in enumerate(data[:n], 1):
        value = item.get(key) if isinstance(item, dict) else item
        if not isinstance(value, str) or not value.strip():
            raise bad(f"variant {k} has no {key}")
        value = value.strip()
        if key == "subject" and ("\n" in value or "\r" in value):
            raise bad(f"variant {k}'s subject is more than one line")
        out.append(Drafted(value, None) if key == "subject" else Drafted(None, value))
    if len(out) < n:
        raise bad(f"{len(out)} variant(s) instead of {n}")
    return out


# ---------------------------------------------------------------- the model


def _network_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if isinstance(cur, (ConnectionError, TimeoutError)) or any(
            w in name for w in ("Connect", "Timeout", "Network")
        ):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def ask_model(model_id: str | None, prompt: str, kind: str) -> tuple[str, str]:
    """Ask the model (llm's default when `model_id` is None): (its id, its reply's text).

    A model that is not installed or unknown is a UsageError (exit 2); one whose key is not
    set a SetupError (78: a person must set it); a network failure is ModelUnreachableError
    (75); any other failure a UsageError."""
    try:
        import llm
    except ImportError:
        raise UsageError("the `llm` library is not installed", INSTALL_HINT) from None
    try:
        model = llm.get_model(model_id) if model_id else llm.get_model()
    except llm.UnknownModelError:
        name = model_id or "(llm's default model)"
        raise UsageError(
            f"--model {name}: no such model is installed",
            "list the installed ones with `llm models`; models come from llm plugins "
            "(llm install llm-PLUGIN), and llm itself from pip install 'campaignctl[ai]'",
        ) from None
    mid = str(model.model_id)
    try:
        if getattr(model, "supports_schema", False):
            response = model.prompt(prompt, system=SYSTEM, schema=schema(kind))
        else:
            response = model.prompt(prompt, system=SYSTEM)
        return mid, response.text()
    except llm.NeedsKeyException as exc:
        raise SetupError(
            f"model {mid!r}: {exc}", "set its key with `llm keys set KEY` (see `llm models`)"
        ) from None
    except Exception as exc:  # a plugin's own errors: any failure is the model's
        what = f"model {mid!r} failed: {type(exc).__name__}: {exc}; nothing was written"
        if _network_error(exc):
            raise ModelUnreachableError(what, "check the network and try again") from None
        raise UsageError(what, "try again, or another model with --model") from None


# ---------------------------------------------------------------- the commands' cores


def draft(
    path: Path,
    campaign: str,
    step_name: str,
    n: int,
    *,
    model: str | None = None,
    extra: str | None = None,
) -> Outcome:
    """Ask a model for `n` variants of a step and add them to the file as drafts."""
    from campaignctl.config import load
    from campaignctl.config.edit import add_variants

    if not 1 <= n <= MAX_VARIANTS:
        raise UsageError(f"--variants {n}: give 1 to {MAX_VARIANTS}")
    cfg = load(path)
    camp = cfg.campaign(campaign)
    step = next((s for s in camp.steps if s.name == step_name), None)
    if step is None:
        from campaignctl.config import did_you_mean

        raise NotFoundError(
            f"{path}: campaign {campaign!r} has no step {step_name!r}"
            f"{did_you_mean(step_name, [s.name for s in camp.steps])}",
            f"run `campaignctl campaign show {campaign}` to see its steps",
        )
    kind = cfg.channel_kind(step.channel)
    if step.content_sid or (kind == "email" and step.thread):
        what = (
            "sends the approved WhatsApp template content_sid"
            if step.content_sid
            else "replies in the thread, under the thread's subject"
        )
        raise UsageError(
            f"{path}: campaigns.{campaign}: step {step_name!r} {what}: "
            "there is no text of its own to draft"
        )
    prompt = build_prompt(cfg, campaign, step, n, sample_leads(cfg, campaign, kind), extra)
    mid, reply = ask_model(model, prompt, kind)
    drafted = parse_reply(reply, n, kind, mid)
    # The model is asked outside the edit lock (it may take a while); the edit re-reads.
    return add_variants(
        path, campaign, step_name, [(d.subject, d.body) for d in drafted], source=mid
    )


def draft_rows(cfg: Config, campaign: str | None = None) -> list[dict[str, str]]:
    """The draft variants of every campaign (or one): what `draft list` shows."""
    camps = {campaign: cfg.campaign(campaign)} if campaign else cfg.campaigns
    rows = []
    for cname, camp in camps.items():
        for step in camp.steps:
            for v in step.variants:
                if v.status != "draft":
                    continue
                lines = (v.body or "").strip().splitlines()
                content = v.subject or (lines[0] if lines else "") or f"template {v.template}"
                rows.append(
                    {"campaign": cname, "step": step.name, "variant": v.name, "content": content}
                )
    return rows
