"""`check`: every problem of the campaign file, its templates and its sample leads, at once.

In order: the file itself (syntax, keys, references, limits), audience expressions, every
template compiled, then every step of every campaign rendered in memory for every sample lead
that the step's channel can reach. SMS bodies over two segments and WhatsApp steps sending free
text are warnings; everything else is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaignctl.config import Config, Step, line_of, locate_keys, read_text, validate_text
from campaignctl.errors import Problem
from campaignctl.render import Renderer, RenderError, lead_label
from campaignctl.samples import SAMPLE_LIMIT, builtin_samples, database_samples, reachable
from campaignctl.sms import analyze

#: An SMS step that renders into more segments than this gets a warning.
MAX_SMS_SEGMENTS = 2


@dataclass
class CheckReport:
    """What `check` found, and what it rendered."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    samples: int = 0
    sample_source: str = ""
    rendered: int = 0

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
    text = read_text(path)
    cfg, problems = validate_text(text, path)
    report = CheckReport(path, problems)
    if cfg is None:
        return report
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
    lines = locate_keys(text)
    report.problems.extend(_audience_problems(cfg, samples, lines))
    _render_all(cfg, samples, lines, report)
    return report


def _audience_problems(
    cfg: Config, samples: list[dict[str, Any]], lines: dict[str, int]
) -> list[Problem]:
    from campaignctl.audience import AudienceError, compile_audience

    out = []
    for name, camp in cfg.campaigns.items():
        key = f"campaigns.{name}.audience"
        lead: dict[str, Any] | None = None
        try:
            matches = compile_audience(camp.audience, key)
            for lead in samples:
                matches(lead)
        except AudienceError as exc:
            msg = exc.message.removeprefix(f"{key}: ")
            if lead is not None:
                msg += f" for lead {lead_label(lead)}"
            out.append(Problem(key, msg, "error", line_of(key, lines), cfg.path))
    return out


def _step_has_config_error(problems: list[Problem], sp: str) -> bool:
    return any(
        p.severity == "error" and (p.path == sp or p.path.startswith((sp + ".", sp + "[")))
        for p in problems
    )


def _problem(cfg: Config, exc: RenderError, lines: dict[str, int], message: str) -> Problem:
    if exc.file is None or exc.file == cfg.path:
        return Problem(exc.path, message, "error", exc.line or line_of(exc.path, lines), cfg.path)
    return Problem(exc.path, message, "error", exc.line, exc.file)


def _render_all(
    cfg: Config, samples: list[dict[str, Any]], lines: dict[str, int], report: CheckReport
) -> None:
    renderer = Renderer(cfg)
    config_problems = list(report.problems)
    try:
        renderer.compile_unsubscribe_url()
    except RenderError as exc:
        report.problems.append(_problem(cfg, exc, lines, exc.detail))
    for cname, camp in cfg.campaigns.items():
        for i, step in enumerate(camp.steps):
            sp = f"campaigns.{cname}.steps[{i}]"
            if step.channel not in cfg.channels or _step_has_config_error(config_problems, sp):
                continue  # already reported; rendering would only repeat it
            _check_step(cfg, renderer, cname, i, step, samples, lines, report)


def _check_step(
    cfg: Config,
    renderer: Renderer,
    cname: str,
    i: int,
    step: Step,
    samples: list[dict[str, Any]],
    lines: dict[str, int],
    report: CheckReport,
) -> None:
    """Compile one step, render it for every sample its channel reaches, add what is wrong."""
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
    leads = [lead for lead in samples if reachable(lead, kind)] or samples
    for lead in leads:
        try:
            out = renderer.render(cname, i, step, lead)
        except RenderError as exc:
            k = (exc.path, exc.reason, exc.line)
            first, count = failures.get(k, (exc, 0))
            failures[k] = (first, count + 1)
            continue
        report.rendered += 1
        if kind == "sms":
            info = analyze(out.text)
            body_key = _body_key(step, sp, out.variant)
            if info.segments > longest.get(body_key, (0, "", ""))[0]:
                longest[body_key] = (info.segments, info.describe(), lead_label(lead))
    for failed, count in failures.values():
        if not failed.path.startswith("campaigns.") and any(
            p.path == failed.path for p in report.problems
        ):
            continue  # a setting (sender.unsubscribe_url) is reported once, not once per step
        more = f" (and {count - 1} more lead(s))" if count > 1 else ""
        report.problems.append(_problem(cfg, failed, lines, failed.detail + more))
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


def _body_key(step: Step, sp: str, variant: str | None) -> str:
    if variant is not None:
        for j, v in enumerate(step.variants):
            if v.name == variant and (v.body or v.template):
                return f"{sp}.variants[{j}].{'template' if v.template else 'body'}"
    return f"{sp}.{'template' if step.template else 'body'}"
