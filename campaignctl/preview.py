"""`preview`: one step rendered for one lead, exactly as the channel would send it.

Email goes through `channels.mime.email_bytes`, the same builder every email provider uses, so
the headers shown are the headers sent; only the Message-ID (and In-Reply-To on thread steps)
are placeholders, because real ones are generated and stored when the message is sent.
Attachments are listed with their sizes (`Rendered.attachments`), never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email import message_from_string, policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from campaignctl.config import Config, Step, did_you_mean
from campaignctl.errors import NotFoundError, UsageError
from campaignctl.render import Rendered, Renderer
from campaignctl.sms import SmsInfo, analyze

if TYPE_CHECKING:
    from campaignctl.web.links import Links


@dataclass
class Preview:
    """A rendered message and how it travels."""

    campaign: str
    index: int
    step: Step
    steps: int
    kind: str
    lead: dict[str, Any]
    lead_source: str
    to: str
    rendered: Rendered
    email: EmailMessage | None = None
    sms: SmsInfo | None = None
    sender: str | None = None  # SMS/WhatsApp `from`, when the channel has one
    max_size: int | None = None  # email: the channel's limit for one message (attachments)

    @property
    def is_draft(self) -> bool:
        """Whether the variant shown is a draft (`preview --variant NAME`)."""
        return any(
            v.name == self.rendered.variant and v.status == "draft" for v in self.step.variants
        )


def _find_step(cfg: Config, campaign: str, step: str | None) -> tuple[int, Step]:
    camp = cfg.campaign(campaign)
    if not camp.steps:
        raise UsageError(
            f"{cfg.path}: campaign {campaign!r} has no steps",
            f"add one with `campaignctl step add {campaign} --channel CH --delay 0d --body ...`",
        )
    if step is None:
        return 0, camp.steps[0]
    for i, s in enumerate(camp.steps):
        if s.name == step:
            return i, s
    if step.isdigit() and 1 <= int(step) <= len(camp.steps):
        return int(step) - 1, camp.steps[int(step) - 1]
    raise NotFoundError(
        f"{cfg.path}: campaign {campaign!r} has no step {step!r}"
        f"{did_you_mean(step, [s.name for s in camp.steps])}",
        f"its steps are: {', '.join(s.name for s in camp.steps)}",
    )


def _domain(cfg: Config) -> str:
    email = cfg.sender.email or ""
    return email.rsplit("@", 1)[-1] if "@" in email else "campaignctl.local"


def build_preview(
    cfg: Config,
    campaign: str,
    step: str | None,
    lead: str | None,
    *,
    now: datetime,
    variant: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Preview:
    """`render_preview` in a worker process with memory, CPU and time limits (the campaign
    file's templates are untrusted, see isolation.py); a limit reached is a CampaignctlError
    naming the template's key path. With `[server]` the links are signed with the keys in
    `environ` (default: the process's), as `send` signs them: a missing key is a SetupError."""
    import os

    from campaignctl.isolation import run_limited
    from campaignctl.web.links import Links

    links = Links.for_config(cfg, os.environ if environ is None else environ)
    return run_limited(render_preview, cfg, campaign, step, lead, now, variant, links)


def render_preview(
    cfg: Config,
    campaign: str,
    step: str | None,
    lead: str | None,
    now: datetime,
    variant: str | None = None,
    links: Links | None = None,
) -> Preview:
    """Render `step` (name or 1-based number; default the first) of `campaign` for a lead.

    The lead is found by email or phone (database, else built-in samples); without `lead`, it
    is the first lead in the campaign's audience that the step's channel can reach. The
    variant is the one the lead hashes to (never a draft), or `variant` by name (drafts too).
    """
    from campaignctl.samples import find_lead, first_matching, reachable

    index, st = _find_step(cfg, campaign, step)
    names = [v.name for v in st.variants]
    if variant is not None and variant not in names:
        raise NotFoundError(
            f"{cfg.path}: step {st.name!r} of campaign {campaign!r} has no variant {variant!r}"
            f"{did_you_mean(variant, names)}",
            f"its variants are: {', '.join(names)}" if names else "it has no variants",
        )
    kind = cfg.channel_kind(st.channel)
    camp = cfg.campaigns[campaign]
    if lead is not None:
        ctx, source = find_lead(cfg, lead)
        if not reachable(ctx, kind):
            contact = "email address" if kind == "email" else "phone number"
            raise UsageError(
                f"lead {lead} has no {contact}: step {st.name!r} ({kind}) cannot reach them"
            )
    else:
        # a trigger campaign's audience reads the event (`item`): any reachable lead
        audience = None if camp.kind == "trigger" else camp.audience
        ctx, source = first_matching(cfg, audience, kind, f"campaigns.{campaign}.audience")
    renderer = Renderer(cfg, links)
    rendered = renderer.render(campaign, index, st, ctx, variant_name=variant)
    to = str(ctx["email"] if kind == "email" else ctx["phone"])
    out = Preview(campaign, index, st, len(camp.steps), kind, ctx, source, to, rendered)
    if kind == "email":
        from campaignctl.attachments import max_message_size

        out.email = _email(cfg, renderer, campaign, index, st, ctx, rendered, now)
        out.max_size = max_message_size(cfg.channels[st.channel])
        return out
    from campaignctl.channels.registry import get

    ch = cfg.channels[st.channel]
    sender = get(ch.provider).sender
    out.sender = sender(ch) if sender else None
    if kind == "whatsapp":
        out.to = f"whatsapp:{to}"
    else:
        out.sms = analyze(rendered.text)
    return out


def _email(
    cfg: Config,
    renderer: Renderer,
    campaign: str,
    index: int,
    step: Step,
    lead: dict[str, Any],
    rendered: Rendered,
    now: datetime,
) -> EmailMessage:
    from campaignctl.channels.base import Outgoing
    from campaignctl.channels.mime import email_bytes, reply_subject

    subject, in_reply_to = rendered.subject, None
    if step.thread:
        steps = cfg.campaigns[campaign].steps
        first = next(
            (i for i, s in enumerate(steps) if cfg.channel_kind(s.channel) == "email"), index
        )
        if first != index:
            head = renderer.render(campaign, first, steps[first], lead)
            in_reply_to = f"<message-id-of-{steps[first].name}@{_domain(cfg)}>"
            subject = subject or reply_subject(head.subject)
    msg = Outgoing(
        id=0,
        campaign=campaign,
        step=step.name,
        channel=step.channel,
        kind="email",
        to=str(lead["email"]),
        to_name=" ".join(str(lead[k]) for k in ("first_name", "last_name") if lead.get(k)),
        text=rendered.text,
        claimed_at=now,
        subject=subject,
        html=rendered.html,
        rfc_message_id=f"<generated-when-sent@{_domain(cfg)}>",
        in_reply_to=in_reply_to,
        unsubscribe_url=rendered.unsubscribe_url,
    )
    # Parsed back from the bytes a provider would get, so the preview shows exactly those.
    parsed: EmailMessage = message_from_string(
        email_bytes(msg, cfg.sender).decode("utf-8"), policy=policy.default
    )
    return parsed
