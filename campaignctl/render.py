"""Templates: Jinja2, compiled once per step, rendered per lead.

Subjects and bodies are inline (`body = "..."`) or in a file (`template = "x.md.j2"`, relative to
the campaign file). Markdown templates (`.md`, `.md.j2`) become an HTML part plus the plain text
they were written in; `.html` templates get autoescaping and a text part derived from the HTML.
Email bodies get the sender's postal address and an unsubscribe line as a footer, so `preview`
shows exactly what is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)

from campaignctl.config import Campaign, Config, Step, Variant
from campaignctl.errors import CampaignctlError


class RenderError(CampaignctlError):
    """A template that does not compile, or does not render for a lead."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        file: Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path, self.file, self.line = path, file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{path + ': ' if path else ''}{message}", hint)


@dataclass(frozen=True)
class Rendered:
    """One message's content for one lead, ready for a channel."""

    kind: str  # email | sms | whatsapp
    text: str
    subject: str | None = None
    html: str | None = None
    variant: str | None = None
    content_sid: str | None = None
    content_variables: dict[str, str] = field(default_factory=dict)


def choose_variant(
    variants: list[Variant], campaign: str, step: str, lead_id: int | str
) -> Variant | None:
    """A weighted pick that is the same for a lead on every run (hash of campaign/step/lead)."""
    if not variants:
        return None
    digest = hashlib.sha256(f"{campaign}\x00{step}\x00{lead_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in variants)
    acc = 0.0
    for v in variants:
        acc += v.weight
        if point < acc:
            return v
    return variants[-1]


class _TextFromHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "p", "div", "li", "tr", "h1", "h2", "h3"):
            self.parts.append("\n")


def html_to_text(html: str) -> str:
    p = _TextFromHtml()
    p.feed(html)
    lines = [" ".join(line.split()) for line in "".join(p.parts).splitlines()]
    return "\n".join(lines).strip() + "\n"


def markdown_to_html(text: str) -> str:
    from markdown_it import MarkdownIt

    html: str = MarkdownIt("commonmark", {"html": False, "linkify": False}).render(text)
    return html


@dataclass
class _Body:
    template: Template
    fmt: str  # "text" | "markdown" | "html"


class Renderer:
    """Compiles each step's templates once and renders them for any lead."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._steps: dict[
            tuple[str, str],
            tuple[Template | None, dict[str | None, tuple[Template | None, _Body | None]]],
        ] = {}

    @cached_property
    def env(self) -> Environment:
        return Environment(
            loader=FileSystemLoader(str(self.cfg.base_dir)),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            autoescape=lambda name: bool(name) and str(name).endswith((".html", ".html.j2")),
        )

    def _compile_inline(self, source: str, key: str) -> Template:
        try:
            return self.env.from_string(source)
        except TemplateSyntaxError as exc:
            raise RenderError(
                f"template syntax error: {exc.message}", path=key, file=self.cfg.path, line=None
            ) from None

    def _compile_file(self, name: str, key: str) -> _Body:
        try:
            tpl = self.env.get_template(name)
        except TemplateNotFound:
            raise RenderError(
                f"template file {name!r} not found", path=key, file=self.cfg.resolve(name)
            ) from None
        except TemplateSyntaxError as exc:
            raise RenderError(
                f"template syntax error: {exc.message}",
                path=key,
                file=self.cfg.resolve(exc.filename or name),
                line=exc.lineno,
            ) from None
        base = name.removesuffix(".j2").removesuffix(".jinja")
        fmt = (
            "markdown"
            if base.endswith((".md", ".markdown"))
            else ("html" if base.endswith((".html", ".htm")) else "text")
        )
        return _Body(tpl, fmt)

    def compile_step(self, campaign: str, index: int, step: Step) -> None:
        """Compile a step's subject and bodies (per variant); RenderError on the first problem."""
        self._compiled(campaign, index, step)

    def _compiled(
        self, campaign: str, index: int, step: Step
    ) -> tuple[Template | None, dict[str | None, tuple[Template | None, _Body | None]]]:
        key = (campaign, step.name)
        if key in self._steps:
            return self._steps[key]
        sp = f"campaigns.{campaign}.steps[{index}]"
        subject = self._compile_inline(step.subject, f"{sp}.subject") if step.subject else None
        default_body = self._body(step.body, step.template, sp)
        per_variant: dict[str | None, tuple[Template | None, _Body | None]] = {
            None: (subject, default_body)
        }
        for j, v in enumerate(step.variants):
            vp = f"{sp}.variants[{j}]"
            vsub = self._compile_inline(v.subject, f"{vp}.subject") if v.subject else subject
            vbody = self._body(v.body, v.template, vp) or default_body
            per_variant[v.name] = (vsub, vbody)
        self._steps[key] = (subject, per_variant)
        return self._steps[key]

    def _body(self, body: str | None, template: str | None, path: str) -> _Body | None:
        if template:
            return self._compile_file(template, f"{path}.template")
        if body is not None:
            return _Body(self._compile_inline(body, f"{path}.body"), "text")
        return None

    def context(
        self, campaign: str, step: Step, index: int, lead: Mapping[str, Any]
    ) -> dict[str, Any]:
        camp: Campaign = self.cfg.campaigns[campaign]
        sender = self.cfg.sender.model_dump(exclude_none=True)
        return {
            "lead": lead,
            "sender": sender,
            "campaign": {"name": campaign, "kind": camp.kind, "description": camp.description},
            "step": {"name": step.name, "index": index + 1, "channel": step.channel},
        }

    def render(
        self,
        campaign: str,
        index: int,
        step: Step,
        lead: Mapping[str, Any],
        *,
        lead_key: int | str | None = None,
    ) -> Rendered:
        """Render one step for one lead (a `lead_context` mapping)."""
        kind = self.cfg.channel_kind(step.channel)
        _, variants = self._compiled(campaign, index, step)
        variant = choose_variant(
            step.variants,
            campaign,
            step.name,
            lead_key if lead_key is not None else lead.get("id", lead.get("email", "")),
        )
        subject_t, body = variants[variant.name if variant else None]
        ctx = self.context(campaign, step, index, lead)
        sp = f"campaigns.{campaign}.steps[{index}]"
        try:
            subject = " ".join(subject_t.render(ctx).split()) if subject_t else None
            text = html = None
            if body is not None:
                out = body.template.render(ctx)
                if body.fmt == "markdown":
                    text, html = out, markdown_to_html(out)
                elif body.fmt == "html":
                    text, html = html_to_text(out), out
                else:
                    text = out
            content_vars = {
                k: self.env.from_string(v).render(ctx) for k, v in step.content_variables.items()
            }
        except UndefinedError as exc:
            who = lead.get("email") or lead.get("phone") or "lead"
            raise RenderError(
                f"{exc.message} for {who}",
                path=sp,
                hint="give it a fallback: {{ lead.x | default('...') }}",
            ) from None
        except TemplateError as exc:
            raise RenderError(f"cannot render: {exc}", path=sp) from None
        text = (text or "").strip("\n")
        if kind == "email":
            if step.thread and not subject:
                subject = None  # the channel reuses the thread's subject with "Re: "
            text, html = self._email_footer(text, html)
        return Rendered(
            kind=kind,
            text=text,
            subject=subject,
            html=html,
            variant=variant.name if variant else None,
            content_sid=step.content_sid,
            content_variables=content_vars,
        )

    def _email_footer(self, text: str, html: str | None) -> tuple[str, str | None]:
        s = self.cfg.sender
        lines = []
        if s.postal_address:
            lines.append(f"{s.name}, {s.postal_address}" if s.name else s.postal_address)
        if s.unsubscribe_url:
            lines.append(f"Unsubscribe: {s.unsubscribe_url}")
        else:
            lines.append('To stop these emails, reply with "unsubscribe".')
        text = f"{text}\n\n--\n" + "\n".join(lines) + "\n"
        if html is not None:
            from html import escape

            foot = "<br>".join(escape(x) for x in lines)
            html = f'{html}\n<hr>\n<p style="font-size:small;color:#666">{foot}</p>\n'
        return text, html
