"""`check`: every problem of the campaign file, its templates and its sample leads, at once.

In order: the file itself (syntax, keys, references, limits; a refused key does not stop the
rest from being checked), outbox folders, audience expressions, every template compiled, then
every step of every campaign (every variant of it) rendered in memory for every sample lead in
the campaign's audience that the step's channel can reach (attachment paths resolved for each,
and their total size compared with the channel's limit, see campaignctl/attachments.py).
Warnings: SMS bodies over two segments, WhatsApp steps sending free text, an audience no sample
lead matches or that fails on some sample leads (they are skipped, as `send` skips them), and
the compliance lint (email without the sender's postal address; a campaign's first SMS or
WhatsApp message without opt-out wording, see `OPTOUT_WORDING`). Everything else is an error.

Edits run the same checks (`check_text` on the edited text) and are refused on any error they
introduce (see `edit._edit_locked`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaignctl.config import (
    Config,
    Step,
    is_unknown_key,
    line_of,
    locate_keys,
    read_text,
    validate_text,
)
from campaignctl.draft import draft_problems, step_texts
from campaignctl.errors import CampaignctlError, Problem
from campaignctl.render import Rendered, Renderer, RenderError, lead_label
from campaignctl.samples import SAMPLE_LIMIT, builtin_samples, database_samples, reachable
from campaignctl.sms import analyze

if TYPE_CHECKING:
    from campaignctl.web.links import Links

#: An SMS step that renders into more segments than this gets a warning.
MAX_SMS_SEGMENTS = 2

#: Opt-out wording the first SMS/WhatsApp message of a campaign should carry: the carrier
#: keywords Twilio honours (any case), plus words that are everyday words in some language and
#: count only in capitals: END, CANCEL, QUIT, and Spanish ALTO, BAJA and French ARRET.
OPTOUT_WORDING = re.compile(
    r"\b(?:stop|stopall|unsubscribe|optout|opt[- ]out|revoke)\b"
    r"|\b(?-i:END|CANCEL|QUIT|ALTO|BAJA|ARR[EÊ]T)\b",
    re.IGNORECASE,
)


@dataclass
class CheckReport:
    """What `check` found, and what it rendered."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    samples: int = 0
    sample_source: str = ""
    rendered: int = 0
    #: The checked config (without refused keys when some were refused); None when unusable.
    config: Config | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    def summary(self) -> str:
        """`campaigns.toml: 0 error(s), 1 warning(s); 9 message(s) rendered for 6 ...`."""
        out = f"{self.path}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        if self.sample_source:
            out += (
                f"; {self.rendered} message(s) rendered for {self.samples} "
                f"sample lead(s) ({self.sample_source})"
            )
        return out


def run_checks(
    path: Path,
    samples: list[dict[str, Any]] | None = None,
    *,
    source: str = "given",
    leads_csv: Path | None = None,
) -> CheckReport:
    """Check the campaign file at `path` and render every step for every sample lead.

    `samples` are lead contexts (the shape of `audience.lead_context`), named by `source` in the
    summary (`--leads sample.csv`); when None, the first `SAMPLE_LIMIT` leads of the database
    are used if it exists (it is never created), else `samples.BUILTIN_SAMPLES`. Raises
    CampaignctlError only when the campaign file (or `leads_csv`) cannot be read.
    `leads_csv` reads sample leads from a CSV file as `leads import` would, without a database.
    """
    return check_text(read_text(path), path, samples, source=source, leads_csv=leads_csv)


def check_text(
    text: str,
    path: Path,
    samples: list[dict[str, Any]] | None = None,
    *,
    source: str = "given",
    leads_csv: Path | None = None,
) -> CheckReport:
    """`run_checks` on a campaign file's text (an edit checks its result before writing it).

    Templates and audiences are untrusted: everything runs in a worker process with memory,
    CPU and time limits (see isolation.py). A template that exceeds one is a problem of its key
    path, and a new worker checks the rest without rendering it again.
    """
    from campaignctl.isolation import LimitExceeded, run_limited

    exceeded: dict[str, str] = {}
    while True:
        try:
            return run_limited(
                _check_text, text, path, samples, source, leads_csv, exceeded=exceeded
            )
        except LimitExceeded as exc:
            if not exc.key or len(exceeded) >= MAX_LIMITED_TEMPLATES:
                raise CampaignctlError(
                    f"{path}: {exc.message}; stopped checking after "
                    f"{len(exceeded) + 1} template(s) exceeded a limit"
                ) from None
            exceeded[exc.key] = exc.detail


#: How many templates may exceed a worker's limit before `check` gives up (each costs up to
#: `isolation.CPU_LIMIT` seconds).
MAX_LIMITED_TEMPLATES = 10


def _check_text(
    text: str,
    path: Path,
    samples: list[dict[str, Any]] | None,
    source: str,
    leads_csv: Path | None,
) -> CheckReport:
    """`check_text` in this process: the worker's side."""
    cfg, problems = validate_text(text, path, remainder=True)
    report = CheckReport(path, problems, config=cfg)
    if cfg is None:
        return report
    lines = locate_keys(text)
    report.problems.extend(_provider_problems(cfg, lines))
    report.problems.extend(_postal_address_problems(cfg, lines))
    report.problems.extend(_server_problems(cfg, lines))
    if samples is None and leads_csv is not None:
        from campaignctl.leads import sample_leads_from_csv

        samples, source = sample_leads_from_csv(leads_csv, cfg), str(leads_csv)
    if samples is None:
        samples = database_samples(cfg, SAMPLE_LIMIT)
        source = f"first {SAMPLE_LIMIT} from {cfg.settings.database}"
        if not samples:
            source = "built-in" + (" (the database has no leads)" if samples == [] else "")
            samples = builtin_samples()
    report.samples, report.sample_source = len(samples), source
    problems, audiences = _audiences(cfg, samples, lines)
    report.problems.extend(problems)
    _render_all(cfg, audiences, lines, report)
    return report


def _provider_problems(cfg: Config, lines: dict[str, int]) -> list[Problem]:
    """What each channel's provider says about this machine (an outbox folder it cannot write)."""
    from campaignctl.channels.registry import get

    out = []
    for name, ch in cfg.channels.items():
        check = get(ch.provider).environment_problems
        for key, msg, severity in check(cfg, name, ch) if check else ():
            path = f"channels.{name}.{key}"
            out.append(Problem(path, msg, severity, line_of(path, lines), cfg.path))
    return out


def _server_problems(cfg: Config, lines: dict[str, int]) -> list[Problem]:
    """`[server]` or a hook whose signing key is not in this environment: every email's
    unsubscribe link is signed with the server's, each hook's POST with its own."""
    import os

    from campaignctl.hooks import key_problems
    from campaignctl.web.keys import key_problem

    out = [
        Problem(key, why, "error", line_of(key, lines), cfg.path)
        for key, why in key_problems(cfg, os.environ)
    ]
    if cfg.server is not None and cfg.sender.unsubscribe_url is not None:
        key = "sender.unsubscribe_url"
        msg = (
            "not used while [server] is configured: emails carry the server's signed one-click "
            "link (/u/TOKEN) in List-Unsubscribe, the footer and {{ unsubscribe_url }}; "
            "remove it, or remove [server] to use it"
        )
        out.append(Problem(key, msg, "warning", line_of(key, lines), cfg.path))
    problem = key_problem(cfg, os.environ)
    if problem is None:
        return out
    key = "server.secret_env"
    out.append(
        Problem(
            key,
            f"{problem[0].split(': ', 1)[1]}; {problem[1]}",
            "error",
            line_of(key, lines),
            cfg.path,
        )
    )
    return out


#: Signs `check`'s links when `[server]`'s key is missing (reported at server.secret_env), so
#: the templates still render with `{{ unsubscribe_url }}` in the shape `send` gives it.
_PLACEHOLDER_KEY = "check-placeholder-key-not-for-sending"


def _links(cfg: Config) -> Links | None:
    import os

    from campaignctl.errors import SetupError
    from campaignctl.web.links import Links
    from campaignctl.web.tokens import Signer

    if cfg.server is None:
        return None
    try:
        return Links.for_config(cfg, os.environ)
    except SetupError:
        return Links(cfg.server.public_base_url, Signer([_PLACEHOLDER_KEY]))


def _postal_address_problems(cfg: Config, lines: dict[str, int]) -> list[Problem]:
    if (cfg.sender.postal_address or "").strip():
        return []
    emailing = [
        repr(name)
        for name, camp in cfg.campaigns.items()
        if any(
            s.channel in cfg.channels and cfg.channel_kind(s.channel) == "email" for s in camp.steps
        )
    ]
    if not emailing:
        return []
    key = "sender.postal_address"
    msg = (
        f"campaign(s) {', '.join(emailing)} send email without the sender's postal address: "
        "CAN-SPAM requires a valid physical postal address in every commercial email "
        "(campaignctl prints it in the footer)"
    )
    return [Problem(key, msg, "warning", line_of(key, lines), cfg.path)]


def _audiences(
    cfg: Config, samples: list[dict[str, Any]], lines: dict[str, int]
) -> tuple[list[Problem], dict[str, list[dict[str, Any]]]]:
    """Audience problems, and the sample leads each campaign's audience selects.

    An audience that does not compile is an error, and its campaign is rendered for every
    sample (its templates may have problems of their own). A lead for which the expression
    fails is skipped, as `send` skips it: a warning counting them, naming the first.
    """
    from campaignctl.audience import AudienceError, AudienceRefused, compile_audience

    out = []
    selected: dict[str, list[dict[str, Any]]] = {}
    for name, camp in cfg.campaigns.items():
        key = f"campaigns.{name}.audience"

        def add(msg: str, severity: str = "error", key: str = key) -> None:
            out.append(Problem(key, msg, severity, line_of(key, lines), cfg.path))

        try:
            matches = compile_audience(camp.audience, key)
        except AudienceError as exc:
            add(exc.message.removeprefix(f"{key}: "))
            selected[name] = samples
            continue
        if camp.kind == "trigger":  # its audience reads the event (`item`): every sample
            selected[name] = samples
            continue
        chosen, skipped, refused = [], 0, False
        reason = ""
        for lead in samples:
            try:
                if matches(lead):
                    chosen.append(lead)
            except AudienceRefused as exc:
                add(exc.message.removeprefix(f"{key}: "))
                refused = True
                break
            except AudienceError as exc:
                if not skipped:
                    reason = f"{exc.message.removeprefix(f'{key}: ')} for lead {lead_label(lead)}"
                skipped += 1
        selected[name] = samples if refused else chosen
        if skipped:
            # as `send` does: the lead is skipped with the reason, the others go on
            add(f"{skipped} sample lead(s) skipped by the audience: {reason}", "warning")
        if camp.steps and samples and not chosen and not skipped and not refused:
            add("no sample lead matches the audience; nothing rendered", "warning")
    return out, selected


def _step_has_config_error(problems: list[Problem], sp: str) -> bool:
    # An unknown key was left out and the rest of the step validated: it still renders.
    return any(
        p.severity == "error"
        and not is_unknown_key(p)
        and (p.path == sp or p.path.startswith((sp + ".", sp + "[")))
        for p in problems
    )


def _problem(cfg: Config, exc: RenderError, lines: dict[str, int], message: str) -> Problem:
    if exc.file is None or exc.file == cfg.path:
        return Problem(exc.path, message, "error", exc.line or line_of(exc.path, lines), cfg.path)
    return Problem(exc.path, message, "error", exc.line, exc.file)


def _render_all(
    cfg: Config,
    audiences: dict[str, list[dict[str, Any]]],
    lines: dict[str, int],
    report: CheckReport,
) -> None:
    renderer = Renderer(cfg, _links(cfg))
    config_problems = list(report.problems)
    try:
        renderer.compile_unsubscribe_url()
    except RenderError as exc:
        report.problems.append(_problem(cfg, exc, lines, exc.detail))
    for cname, camp in cfg.campaigns.items():
        first_of_kind: set[str] = set()
        for i, step in enumerate(camp.steps):
            sp = f"campaigns.{cname}.steps[{i}]"
            if step.channel not in cfg.channels:
                continue
            kind = cfg.channel_kind(step.channel)
            first = kind in ("sms", "whatsapp") and kind not in first_of_kind
            first_of_kind.add(kind)
            if _step_has_config_error(config_problems, sp):
                continue  # already reported; rendering would only repeat it
            samples = audiences[cname]
            _check_step(cfg, renderer, cname, i, step, samples, lines, report, lint_optout=first)
            for key, msg in draft_problems(cfg, cname, i, step):
                report.problems.append(Problem(key, msg, "error", line_of(key, lines), cfg.path))


def _check_step(
    cfg: Config,
    renderer: Renderer,
    cname: str,
    i: int,
    step: Step,
    samples: list[dict[str, Any]],
    lines: dict[str, int],
    report: CheckReport,
    *,
    lint_optout: bool = False,
) -> None:
    """Compile one step, render it for every sample its channel reaches, add what is wrong.

    `lint_optout`: this is the campaign's first SMS or WhatsApp step, whose text should tell
    the lead how to opt out."""
    sp = f"campaigns.{cname}.steps[{i}]"
    kind = cfg.channel_kind(step.channel)
    if kind == "whatsapp" and not step.content_sid:
        report.problems.append(
            Problem(
                f"{sp}.content_sid",
                "this WhatsApp step sends free text, which WhatsApp delivers only within "
                "24 h of the lead's last message; business-initiated messages need an "
                "approved template (content_sid)",
                "warning",
                line_of(sp, lines),
                cfg.path,
            )
        )
    try:
        renderer.compile_step(cname, i, step)
    except RenderError as exc:
        report.problems.append(_problem(cfg, exc, lines, exc.detail))
        return
    # One problem per template and cause, naming the first lead and counting the others.
    failures: dict[tuple[str, str, int | None], tuple[RenderError, int]] = {}
    longest: dict[str, tuple[int, str, str]] = {}
    no_optout: dict[str, str] = {}
    # A draft must keep the opt-out wording its step has, or that the campaign's first SMS or
    # WhatsApp message needs: an error for a draft (approving it is a choice), by variant.
    drafts = {v.name: j for j, v in enumerate(step.variants) if v.status == "draft"}
    base = step_texts(cfg, step)
    needs_optout = bool(drafts) and (
        lint_optout or bool(OPTOUT_WORDING.search(base["subject"] + "\n" + base["body"]))
    )
    draft_no_optout: dict[str, str] = {}
    oversized: list[Problem] = []  # the first sample lead whose message exceeds the limit
    leads = [lead for lead in samples if reachable(lead, kind)] or samples
    # Every variant for every lead: a rarely chosen variant is sent to someone, some day.
    names: list[str | None] = [v.name for v in step.variants] or [None]
    for lead, variant in ((lead, v) for lead in leads for v in names):
        try:
            out = renderer.render(cname, i, step, lead, variant_name=variant)
        except RenderError as exc:
            k = (exc.path, exc.reason, exc.line)
            first, count = failures.get(k, (exc, 0))
            failures[k] = (first, count + 1)
            continue
        report.rendered += 1
        if out.attachments and not oversized:
            oversized = _oversized(cfg, step, sp, out, lead, lines)
        body_key = _body_key(step, sp, out.variant)
        if kind == "sms":
            info = analyze(out.text)
            if info.segments > longest.get(body_key, (0, "", ""))[0]:
                longest[body_key] = (info.segments, info.describe(), lead_label(lead))
        if variant in drafts:
            if needs_optout and not OPTOUT_WORDING.search(f"{out.subject or ''}\n{out.text}"):
                draft_no_optout.setdefault(variant, lead_label(lead))
        elif lint_optout and out.text.strip() and not OPTOUT_WORDING.search(out.text):
            no_optout.setdefault(body_key, lead_label(lead))
    for failed, count in failures.values():
        if not failed.path.startswith("campaigns.") and any(
            p.path == failed.path for p in report.problems
        ):
            continue  # a setting (sender.unsubscribe_url) is reported once, not once per step
        more = f" (and {count - 1} more lead(s))" if count > 1 else ""
        report.problems.append(_problem(cfg, failed, lines, failed.detail + more))
    report.problems.extend(oversized)
    for body_key, (segments, described, who) in longest.items():
        if segments > MAX_SMS_SEGMENTS:
            report.problems.append(
                Problem(
                    body_key,
                    f"renders into {segments} SMS segments for lead {who} ({described}); "
                    f"each segment is billed, keep it to {MAX_SMS_SEGMENTS}",
                    "warning",
                    line_of(body_key, lines),
                    cfg.path,
                )
            )
    for body_key, who in no_optout.items():
        report.problems.append(
            Problem(
                body_key,
                f"the campaign's first {kind} message has no opt-out wording (for lead {who}): "
                'tell leads how to stop, e.g. "Reply STOP to opt out" (carrier rules, TCPA)',
                "warning",
                line_of(body_key, lines),
                cfg.path,
            )
        )

    needed = f"the campaign's first {kind} message needs" if lint_optout else "its step has"
    for name, who in draft_no_optout.items():
        key = f"{sp}.variants[{drafts[name]}]"
        report.problems.append(
            Problem(
                key,
                f"draft variant {name!r} drops the opt-out wording that {needed} (for lead "
                f"{who}): put it back, or remove the draft with "
                f"`campaignctl draft reject {cname} {step.name} {name}`",
                "error",
                line_of(key, lines),
                cfg.path,
            )
        )


def _oversized(
    cfg: Config, step: Step, sp: str, out: Rendered, lead: dict[str, Any], lines: dict[str, int]
) -> list[Problem]:
    """An error when a message's attachments make it larger than its channel takes."""
    from campaignctl.attachments import estimated_message_size, human_size, max_message_size

    total = estimated_message_size(out.attachments, out.text, out.html)
    limit = max_message_size(cfg.channels[step.channel])
    if total <= limit:
        return []
    key = f"{sp}.attachments"
    msg = (
        f"the message for lead {lead_label(lead)} would be about {human_size(total)} after "
        f"base64 encoding, over channel {step.channel}'s limit of {human_size(limit)}: "
        "attach smaller files, or link to them"
    )
    return [Problem(key, msg, "error", line_of(key, lines), cfg.path)]


def _body_key(step: Step, sp: str, variant: str | None) -> str:
    if variant is not None:
        for j, v in enumerate(step.variants):
            if v.name == variant and (v.body or v.template):
                return f"{sp}.variants[{j}].{'template' if v.template else 'body'}"
    return f"{sp}.{'template' if step.template else 'body'}"
