"""Templates: Jinja2, compiled once per step, rendered per lead.

Subjects and bodies are inline (`body = "..."`) or in a file (`template = "x.md.j2"`, relative to
the campaign file). Markdown templates (`.md`, `.md.j2`) become an HTML part plus the plain text
they were written in; `.html` templates get autoescaping and a text part derived from the HTML.
Email bodies get the sender's postal address and an unsubscribe line as a footer, so `preview`
shows exactly what is sent.

Templates are untrusted input (a campaign file may come from a pull request), so they run in
Jinja2's immutable sandbox: `{{ ''.__class__ }}` is a render error, never code that runs, and
template files, includes and extends stay inside the campaign file's directory.

Printing an undefined value is an error, so nobody receives "Hi ,"; testing one works
(`{% if lead.beds %}`, `is defined`, `default`). Every error names the key path of the template
(`campaigns.welcome.steps[0].template`), its file and line where known, and the lead.

`sender.unsubscribe_url` is a template too, rendered per lead with every `{{ value }}`
URL-encoded (`?e={{ lead.email }}` gives `?e=maria%40example.com`).

With `[server]` (and its `links`), the unsubscribe URL is instead the lead's signed one-click
link for the step's channel (`Links.unsubscribe`, `/u/TOKEN`, docs/web.md), signed once per
message; `sender.unsubscribe_url` is then not used. Templates see the URL as
`{{ unsubscribe_url }}` (undefined when neither is configured); email footers and the
`List-Unsubscribe` header carry it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from jinja2 import (
    BaseLoader,
    Environment,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
)
from jinja2.exceptions import SecurityError

from campaignctl.attachments import Attachment
from campaignctl.config import Campaign, Config, Step, Variant, header_problem, url_problem
from campaignctl.errors import CampaignctlError
from campaignctl.isolation import LimitExceeded, memory_message, working_on
from campaignctl.sandbox import CappedSandbox

if TYPE_CHECKING:
    from campaignctl.web.links import Links


class RenderError(CampaignctlError):
    """A template that does not compile, or does not render for a lead.

    `detail` is the message without its location, `path` the key path of the template in the
    campaign file, `file` and `line` where the problem is (a template file, or None for an
    inline template), `lead` who it failed for, and `reason` the cause without the lead (to
    group the same failure across leads).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        file: Path | None = None,
        line: int | None = None,
        lead: str | None = None,
        reason: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.detail, self.path, self.file, self.line, self.lead = message, path, file, line, lead
        self.reason = reason or message
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
    #: email: the signed `/u/TOKEN` link with `[server]`, else `sender.unsubscribe_url`
    #: rendered for this lead
    unsubscribe_url: str | None = None
    attachments: tuple[Attachment, ...] = ()  # email only, resolved for this lead


def choose_variant(
    variants: list[Variant], campaign: str, step: str, lead_id: int | str
) -> Variant | None:
    """The variant the engine's `decide` picks for a lead (a stable hash of campaign/step/lead);
    `render` falls back on it when it is not told which variant to render (preview, check)."""
    from campaignctl.engine.decide import choose_variant as pick

    return pick(variants, campaign, step, lead_id)


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
    """A readable text part for an HTML body: tags dropped, one line per block."""
    p = _TextFromHtml()
    p.feed(html)
    lines = [" ".join(line.split()) for line in "".join(p.parts).splitlines()]
    return "\n".join(lines).strip() + "\n"


def markdown_to_html(text: str) -> str:
    """CommonMark to HTML; raw HTML in the source is escaped, not passed through."""
    from markdown_it import MarkdownIt

    html: str = MarkdownIt("commonmark", {"html": False, "linkify": False}).render(text)
    return html


class _Named(dict[str, Any]):
    """A context mapping that knows its name, so an undefined key reads `lead.city`."""

    def __init__(self, label: str, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.label = label


class SampleItem(dict[str, Any]):
    """The `item` of a trigger campaign rendered without an event (`check`, `preview`, a test
    send): every key reads as its own name in brackets, `[item.address]`."""

    def __missing__(self, key: str) -> str:
        return f"[item.{key}]"


class _Undefined(Undefined):
    """Printing, iterating or computing with an undefined value is an error naming it
    (`lead.city is undefined`); testing it is not: it is false, `is defined` and `default`
    work, it equals nothing and contains nothing."""

    __slots__ = ()
    __str__ = __iter__ = __len__ = Undefined._fail_with_undefined_error

    def __contains__(self, item: object) -> bool:
        return False

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint is None and isinstance(obj, _Named) and isinstance(name, str):
            return f"{obj.label}.{name} is undefined"
        return super()._undefined_message


class _Env(CappedSandbox):
    """The capped sandbox (see sandbox.py), where `lead.items` is the lead's `items` column,
    not dict.items: keys win over attributes."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, _Named):
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        # At once, rather than an undefined that is merely false in an `if`: `check` must
        # report a template that reaches for internals, whatever it does with them.
        owner = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        raise SecurityError(f"access to attribute {attribute!r} of {owner!r}")


class _FileLoader(BaseLoader):
    """Template files (and their includes) by their path relative to the campaign file, never
    outside its directory (see `Config.template_path`)."""

    def __init__(self, template_path: Callable[[str], Path]) -> None:
        self.template_path = template_path

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            path = self.template_path(template)
        except ValueError as exc:
            raise SecurityError(str(exc)) from None
        try:
            source = path.read_text(encoding="utf-8-sig")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise TemplateNotFound(template) from None
        mtime = path.stat().st_mtime
        return source, str(path), lambda: path.stat().st_mtime == mtime


@dataclass
class _Body:
    template: Template
    fmt: str  # "text" | "markdown" | "html"
    key: str  # key path in the campaign file
    file: Path | None = None  # the template file; None when inline

    @cached_property
    def _globals(self) -> dict[str, Any]:
        return dict(self.template.globals)

    def render(self, ctx: dict[str, Any]) -> str:
        """`template.render(ctx)`, without flattening the template's globals (a chain of
        mappings) into every message's context: they are flattened once. The context, the
        output and the errors (traceback rewritten to the template's lines) are render's."""
        t = self.template
        env = t.environment
        glob = self._globals
        context = env.context_class(env, {**glob, **ctx}, t.name, t.blocks, globals=glob)
        try:
            return env.concat(t.root_render_func(context))
        except Exception:
            env.handle_exception()


@dataclass
class _StepTemplates:
    variants: dict[str | None, tuple[_Body | None, _Body | None]]  # subject, body per variant
    content_variables: dict[str, _Body]
    attachments: list[_Body] = field(default_factory=list)


def _template_line(exc: BaseException, filename: str | None) -> int | None:
    """The line in `filename` where rendering failed (Jinja rewrites tracebacks to it)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _undefined_hint(reason: str) -> str:
    if "'unsubscribe_url'" in reason:
        return (
            "add [server] (one-click unsubscribe links, docs/web.md; for email, "
            "sender.unsubscribe_url also gives it), or test it: {% if unsubscribe_url %}"
        )
    return "give it a fallback: {{ lead.x | default('...') }}"


def lead_label(lead: Mapping[str, Any]) -> str:
    """How a lead is named in messages: email, else phone, else name."""
    for key in ("email", "phone"):
        if lead.get(key):
            return str(lead[key])
    name = " ".join(str(lead[k]) for k in ("first_name", "last_name") if lead.get(k))
    return name or "a lead without contact"


class Renderer:
    """Compiles each step's templates once and renders them for any lead.

    `links` signs the one-click unsubscribe links when the campaign file has `[server]`
    (`Links.for_config`); without them the sender's `unsubscribe_url` is used, as before
    `[server]` existed (an engine that only enrols renders nothing)."""

    def __init__(self, cfg: Config, links: Links | None = None) -> None:
        self.cfg = cfg
        self.links = links if cfg.server is not None else None
        self._steps: dict[tuple[str, str], _StepTemplates] = {}
        self._kinds: dict[str, str] = {}  # channel -> kind, as the file says (fixed)

    @cached_property
    def env(self) -> Environment:
        return _Env(
            loader=_FileLoader(self.cfg.template_path),
            undefined=_Undefined,
            keep_trailing_newline=True,
            autoescape=lambda name: bool(name) and str(name).endswith((".html", ".html.j2")),
        )

    @cached_property
    def _sender(self) -> dict[str, Any]:
        """What templates see as `sender` (each message gets its own copy, in `_Named`)."""
        return self.cfg.sender.model_dump(exclude_none=True)

    @cached_property
    def _url_env(self) -> Environment:
        """For `sender.unsubscribe_url`: what `{{ ... }}` prints is URL-encoded."""
        return _Env(
            loader=_FileLoader(self.cfg.template_path),
            undefined=_Undefined,
            finalize=lambda value: quote(str(value), safe=""),
        )

    @cached_property
    def _unsubscribe(self) -> _Body | None:
        url = self.cfg.sender.unsubscribe_url
        if url is None:
            return None
        key = "sender.unsubscribe_url"
        try:
            statements = any(
                kind in ("block_begin", "line_statement_begin")
                for _, kind, _ in self._url_env.lex(url)
            )
        except TemplateSyntaxError as exc:
            raise RenderError(f"template syntax error: {exc.message}", path=key) from None
        if statements:
            # an {% include %} could bring line breaks or anything else into the header
            raise RenderError(
                "only {{ ... }} expressions are allowed here, not {% ... %} statements",
                path=key,
            )
        return self._compile_inline(url, key, self._url_env)

    def compile_unsubscribe_url(self) -> None:
        """Compile `sender.unsubscribe_url`; raises RenderError when it does not compile."""
        _ = self._unsubscribe

    def _compile_inline(self, source: str, key: str, env: Environment | None = None) -> _Body:
        try:
            working_on(key)
            return _Body((env or self.env).from_string(source), "text", key)
        except LimitExceeded as exc:
            raise RenderError(exc.detail, path=key) from None
        except MemoryError:
            raise RenderError(memory_message(), path=key) from None
        except TemplateSyntaxError as exc:
            raise RenderError(f"template syntax error: {exc.message}", path=key) from None
        except RecursionError:
            raise RenderError("template nested too deeply", path=key) from None

    def _compile_file(self, name: str, key: str) -> _Body:
        try:
            path = self.cfg.template_path(name)
        except ValueError as exc:  # also a configuration error: see config.semantic_problems
            raise RenderError(str(exc), path=key, file=self.cfg.path) from None
        try:
            working_on(key)
            tpl = self.env.get_template(name)
        except LimitExceeded as exc:
            raise RenderError(exc.detail, path=key, file=path) from None
        except MemoryError:
            raise RenderError(memory_message(), path=key, file=path) from None
        except TemplateNotFound as exc:
            missing = exc.name if isinstance(exc.name, str) and exc.name else name
            raise RenderError(
                f"template file {missing!r} not found (looked in {self.cfg.base_dir / missing})",
                path=key,
                file=self.cfg.path,
                hint="fix the path; it is relative to the campaign file",
            ) from None
        except SecurityError as exc:  # an {% extends %} or {% import %} leaving the directory
            raise RenderError(f"not allowed in a template: {exc}", path=key, file=path) from None
        except RecursionError:
            raise RenderError("template nested too deeply", path=key, file=path) from None
        except TemplateSyntaxError as exc:
            raise RenderError(
                f"template syntax error: {exc.message}",
                path=key,
                file=Path(exc.filename) if exc.filename else path,
                line=exc.lineno,
            ) from None
        except UnicodeDecodeError as exc:
            raise RenderError(
                f"not UTF-8 text (byte {exc.start})", path=key, file=path, hint="save it as UTF-8"
            ) from None
        base = name.removesuffix(".j2").removesuffix(".jinja")
        fmt = (
            "markdown"
            if base.endswith((".md", ".markdown"))
            else ("html" if base.endswith((".html", ".htm")) else "text")
        )
        return _Body(tpl, fmt, key, path)

    def compile_step(self, campaign: str, index: int, step: Step) -> None:
        """Compile a step's subject, bodies (per variant) and content variables.

        Raises RenderError on the first problem.
        """
        self._compiled(campaign, index, step)

    def _compiled(self, campaign: str, index: int, step: Step) -> _StepTemplates:
        cache_key = (campaign, step.name)
        if cache_key in self._steps:
            return self._steps[cache_key]
        sp = f"campaigns.{campaign}.steps[{index}]"
        subject = self._compile_inline(step.subject, f"{sp}.subject") if step.subject else None
        default_body = self._body(step.body, step.template, sp)
        per_variant: dict[str | None, tuple[_Body | None, _Body | None]] = {
            None: (subject, default_body)
        }
        for j, v in enumerate(step.variants):
            vp = f"{sp}.variants[{j}]"
            vsub = self._compile_inline(v.subject, f"{vp}.subject") if v.subject else subject
            vbody = self._body(v.body, v.template, vp) or default_body
            per_variant[v.name] = (vsub, vbody)
        content_vars = {
            k: self._compile_inline(v, f"{sp}.content_variables.{k}")
            for k, v in step.content_variables.items()
        }
        attachments = [
            self._compile_inline(name, f"{sp}.attachments[{j}]")
            for j, name in enumerate(step.attachments)
        ]
        compiled = _StepTemplates(per_variant, content_vars, attachments)
        self._steps[cache_key] = compiled
        return compiled

    def _body(self, body: str | None, template: str | None, path: str) -> _Body | None:
        if template:
            return self._compile_file(template, f"{path}.template")
        if body is not None:
            return self._compile_inline(body, f"{path}.body")
        return None

    def context(
        self,
        campaign: str,
        step: Step,
        index: int,
        lead: Mapping[str, Any],
        item: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What templates see: `lead`, `sender`, `campaign` and `step`; a trigger campaign's
        messages `item` too (the event given to `campaignctl trigger`)."""
        camp: Campaign = self.cfg.campaigns[campaign]
        sender = self._sender
        if item is None and camp.kind == "trigger":
            item = SampleItem()
        extra = (
            {}
            if item is None
            else {"item": item if isinstance(item, SampleItem) else _Named("item", dict(item))}
        )
        return {
            **extra,
            "lead": _Named("lead", lead),
            "sender": _Named("sender", sender),
            "campaign": _Named(
                "campaign",
                {"name": campaign, "kind": camp.kind, "description": camp.description or ""},
            ),
            "step": _Named(
                "step", {"name": step.name, "index": index + 1, "channel": step.channel}
            ),
        }

    def _run(self, body: _Body, ctx: dict[str, Any], lead: Mapping[str, Any]) -> str:
        try:
            working_on(body.key)
            return body.render(ctx)
        except LimitExceeded as exc:  # in an earlier worker (see isolation.py)
            raise RenderError(exc.detail, path=body.key, file=body.file) from None
        except Exception as exc:  # the template is untrusted input: any failure is its own
            undefined = isinstance(exc, UndefinedError)
            if undefined:
                reason = str(exc)
            elif isinstance(exc, MemoryError):  # in a worker: see isolation.py
                reason = memory_message()
            elif isinstance(exc, SecurityError):
                reason = f"not allowed in a template: {exc}"
            elif isinstance(exc, TemplateError):
                reason = f"cannot render: {exc}"
            else:
                reason = f"cannot render: {type(exc).__name__}: {exc}"
            raise RenderError(
                f"{reason} for lead {lead_label(lead)}",
                path=body.key,
                file=body.file,
                line=_template_line(exc, body.template.filename) if body.file else None,
                lead=lead_label(lead),
                reason=reason,
                hint=_undefined_hint(reason) if undefined else None,
            ) from None

    def render(
        self,
        campaign: str,
        index: int,
        step: Step,
        lead: Mapping[str, Any],
        *,
        lead_key: int | str | None = None,
        variant_name: str | None = None,
        item: Mapping[str, Any] | None = None,
        unsubscribe_lead: int | None = None,
    ) -> Rendered:
        """Render one step for one lead (a `lead_context` mapping); RenderError names both.

        The variant is the one the lead hashes to, or `variant_name` when given (`check`
        renders every variant for every sample lead). The unsubscribe link names
        `unsubscribe_lead` when given (a test send's names lead 0: nobody), else the lead's
        id (0 for a sample lead without one)."""
        kind = self._kinds.get(step.channel) or self._kinds.setdefault(
            step.channel, self.cfg.channel_kind(step.channel)
        )
        compiled = self._compiled(campaign, index, step)
        variant: Variant | None
        if variant_name is not None:
            variant = next(v for v in step.variants if v.name == variant_name)
        else:
            variant = choose_variant(
                step.variants,
                campaign,
                step.name,
                lead_key if lead_key is not None else lead.get("id", lead.get("email", "")),
            )
        subject_t, body = compiled.variants[variant.name if variant else None]
        ctx = self.context(campaign, step, index, lead, item)
        if unsubscribe_lead is None:
            key = lead_key if lead_key is not None else lead.get("id")
            unsubscribe_lead = key if isinstance(key, int) else 0
        unsubscribe_url = self._unsubscribe_url(kind, step.channel, unsubscribe_lead, ctx, lead)
        if unsubscribe_url is not None:
            ctx["unsubscribe_url"] = unsubscribe_url
        subject = " ".join(self._run(subject_t, ctx, lead).split()) if subject_t else None
        text = html = None
        if body is not None:
            out = self._run(body, ctx, lead)
            if body.fmt == "markdown":
                text, html = out, markdown_to_html(out)
            elif body.fmt == "html":
                text, html = html_to_text(out), out
            else:
                text = out
        content_vars = {k: self._run(t, ctx, lead) for k, t in compiled.content_variables.items()}
        text = (text or "").strip("\n")
        if kind == "email":
            text, html = self._email_footer(text, html, unsubscribe_url)
        attachments = (
            tuple(self._attachment(t, ctx, lead) for t in compiled.attachments)
            if kind == "email"
            else ()
        )
        return Rendered(
            kind=kind,
            text=text,
            subject=subject,  # None on a thread step: the channel reuses the thread's, with Re:
            html=html,
            variant=variant.name if variant else None,
            content_sid=step.content_sid,
            content_variables=content_vars,
            unsubscribe_url=unsubscribe_url if kind == "email" else None,
            attachments=attachments,
        )

    def _unsubscribe_url(
        self, kind: str, channel: str, lead_id: int, ctx: dict[str, Any], lead: Mapping[str, Any]
    ) -> str | None:
        """The lead's unsubscribe URL for this message: the signed one-click link for its
        channel with `[server]`, else (email only) `sender.unsubscribe_url` rendered for it."""
        if self.links is not None:
            return self.links.unsubscribe(lead_id, channel)
        if kind != "email" or self._unsubscribe is None:
            return None
        url = self._run(self._unsubscribe, ctx, lead)
        why = url_problem(url)
        if why:  # a lead's value must not break the header (values are URL-encoded)
            raise RenderError(
                f"renders to {url!r} for lead {lead_label(lead)}: {why}",
                path=self._unsubscribe.key,
                lead=lead_label(lead),
                reason=f"renders to a bad URL: {why}",
            )
        return url

    def _attachment(self, body: _Body, ctx: dict[str, Any], lead: Mapping[str, Any]) -> Attachment:
        """An attachment's path rendered for the lead and resolved as `Config.attachment_path`
        resolves it: one that leaves the project, or is missing, fails this message (the file
        is never read here; the MIME builder reads it)."""
        name = self._run(body, ctx, lead).strip()
        who = lead_label(lead)

        def fail(why: str, hint: str | None = None) -> NoReturn:
            raise RenderError(
                f"{why} for lead {who}", path=body.key, lead=who, reason=why, hint=hint
            )

        bad = header_problem(name)  # its file name goes into a header
        if bad:
            fail(f"attachment path renders to {name!r}: {bad}")
        try:
            path = self.cfg.attachment_path(name)
        except ValueError as exc:
            fail(str(exc))
        try:
            if not path.is_file():
                fail(
                    f"attachment file {name!r} not found (looked in {path})",
                    "add the file, or give the path a fallback",
                )
            size = path.stat().st_size
        except OSError as exc:
            fail(f"attachment file {name!r} cannot be read: {exc.strerror}")
        return Attachment(name, path, size)

    def _email_footer(
        self, text: str, html: str | None, unsubscribe_url: str | None
    ) -> tuple[str, str | None]:
        s = self.cfg.sender
        lines = []
        if s.postal_address:
            lines.append(f"{s.name}, {s.postal_address}" if s.name else s.postal_address)
        if unsubscribe_url:
            lines.append(f"Unsubscribe: {unsubscribe_url}")
        else:
            lines.append('To stop these emails, reply with "unsubscribe".')
        # "-- " (with the space) is the signature separator mail clients recognise (RFC 3676)
        text = f"{text}\n\n-- \n" + "\n".join(lines) + "\n"
        if html is not None:
            from html import escape

            foot = "<br>".join(escape(x) for x in lines)
            html = f'{html}\n<hr>\n<p style="font-size:small;color:#666">{foot}</p>\n'
        return text, html
