"""`send --test-to`: one step rendered for a real (or sample) lead and sent to a person's own
address through the step's real channel, marked as a test.

The message is what `send` would hand the provider (the same renderer in the same sandbox, the
same MIME builder with List-Unsubscribe), with `[TEST] ` before the subject (email) or the text
(SMS, WhatsApp) and, on email, an `X-Campaignctl-Test: 1` header. It goes under the send lock and
within the channel's daily and hourly limits, and it is recorded in the `test_send` table, which
`store.messages.send_history` counts: the limits and pacing of later sends see it. It is never a
`message` row, so no lead is enrolled, advanced, counted by `status` or shown by `explain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from campaignctl.channels.base import ChannelError, ErrorKind, Outgoing, Sent
from campaignctl.errors import CampaignctlError, ExitCode, UsageError

if TYPE_CHECKING:
    from campaignctl.config import Config, Step
    from campaignctl.render import Rendered
    from campaignctl.store import Store
    from campaignctl.store.conn import Conn
    from campaignctl.web.links import Links

#: What marks a test: before an email's subject, an SMS's or WhatsApp message's text.
PREFIX = "[TEST] "


@dataclass(frozen=True)
class TestMessage:
    """A rendered test message, and where it went (`provider_id` None: not sent, a dry run)."""

    __test__ = False  # not a pytest test class

    campaign: str
    step: str
    channel: str
    kind: str
    to: str
    subject: str | None
    text: str
    lead: str  # who it was rendered for, e.g. `maria@example.com (built-in sample lead)`
    provider_id: str | None = None


class ChannelAtLimit(CampaignctlError):
    """The channel may not send now (limit used up, breaker open): try again later."""

    exit_code = ExitCode.TEMPFAIL


def address_for(cfg: Config, kind: str, value: str, step: str, channel: str) -> str:
    """`value` normalised as `leads import` does, checked to suit a channel of `kind`."""
    from campaignctl.leads.normalise import normalise_email, normalise_phone

    raw = value.strip()
    if kind == "email":
        norm, why = normalise_email(raw) if "@" in raw else (None, "not an email address")
        need = "an email address"
    else:
        norm, _ext, why = normalise_phone(raw, cfg.settings.default_region)
        need = "a phone number (with its country code, e.g. +63 917 123 4567)"
    if norm is None:
        raise UsageError(
            f"--test-to {value!r}: step {step!r} sends {kind} (channel {channel!r}), so it needs "
            f"{need}: {why}",
            f"give {need}, or choose a {'phone' if kind == 'email' else 'email'} step with --step",
        )
    return norm


def _render(
    cfg: Config,
    campaign: str,
    index: int,
    step: Step,
    lead: dict[str, Any],
    links: Links | None = None,
) -> tuple[Rendered, str | None]:
    """The step for `lead`, and its subject (a thread step's is the first email's, with Re:).
    Runs in the sandboxed worker (`isolation.run_limited`): templates are untrusted.

    Its unsubscribe link names no lead (lead 0): a test goes to the person testing, and
    following its link must not opt out the lead it was rendered for."""
    from campaignctl.channels.mime import reply_subject
    from campaignctl.render import Renderer

    renderer = Renderer(cfg, links)
    rendered = renderer.render(campaign, index, step, lead, unsubscribe_lead=0)
    subject = rendered.subject
    if subject is None and rendered.kind == "email":
        steps = cfg.campaigns[campaign].steps
        first = next(i for i, s in enumerate(steps) if cfg.channel_kind(s.channel) == "email")
        if first != index:
            subject = reply_subject(renderer.render(campaign, first, steps[first], lead).subject)
    return rendered, subject


def _lead(
    cfg: Config, store: Store, campaign: str, kind: str, lead: str | None
) -> tuple[dict[str, Any], str]:
    """The lead to render for, and a label saying which: `--lead` from the database, else the
    first lead of the audience the step can reach (database, else a built-in sample)."""
    from campaignctl.samples import first_matching

    if lead is None:
        ctx, source = first_matching(
            cfg, cfg.campaigns[campaign].audience, kind, f"campaigns.{campaign}.audience"
        )
    else:
        from campaignctl.leads.lookup import find_lead
        from campaignctl.store import lead_context

        with store.read() as session:
            ctx, source = (
                lead_context(find_lead(session, lead, cfg.settings.default_region)),
                "from the database",
            )
    who = ctx.get("email") if kind == "email" else ctx.get("phone")
    who = who or ctx.get("email") or ctx.get("phone") or "a lead"
    return ctx, f"{who} ({source})"


def prepare(
    cfg: Config,
    store: Store,
    campaign: str,
    step: str | None,
    to: str,
    lead: str | None,
    now: datetime,
    environ: Mapping[str, str] | None = None,
) -> tuple[TestMessage, Outgoing]:
    """Render the test message (nothing written, nothing sent): what it says and the `Outgoing`
    to hand the channel (`id` 0 until it is recorded). With `[server]`, links are signed with
    the keys in `environ` (default: the process's); a missing key is a SetupError (78)."""
    import os

    from campaignctl.isolation import run_limited
    from campaignctl.preview import _find_step as find_step
    from campaignctl.web.links import Links

    cfg.campaign(campaign)  # a NotFoundError with "did you mean"
    index, st = find_step(cfg, campaign, step)
    kind = cfg.channel_kind(st.channel)
    address = address_for(cfg, kind, to, st.name, st.channel)
    ctx, who = _lead(cfg, store, campaign, kind, lead)
    links = Links.for_config(cfg, os.environ if environ is None else environ)
    rendered, subject = run_limited(_render, cfg, campaign, index, st, ctx, links)
    text = rendered.text
    if kind == "email":
        from campaignctl.channels.mime import new_message_id

        subject = PREFIX + (subject or "")
        mid: str | None = new_message_id(cfg.sender.email)
    else:
        # a WhatsApp template (content_sid) is sent as approved: its text cannot carry the mark
        text, mid = PREFIX + text, None
    out = Outgoing(
        id=0,
        campaign=campaign,
        step=st.name,
        channel=st.channel,
        kind=kind,
        to=address,
        text=text,
        claimed_at=now,
        subject=subject if kind == "email" else None,
        html=rendered.html,
        rfc_message_id=mid,
        content_sid=rendered.content_sid,
        content_variables=rendered.content_variables,
        unsubscribe_url=rendered.unsubscribe_url,
        test=True,
    )
    msg = TestMessage(campaign, st.name, st.channel, kind, address, out.subject, text, who)
    return msg, out


def _check_room(cfg: Config, conn: Conn, channel: str, now: datetime) -> None:
    """Refuse (exit 75) while the channel's limit is used up or its breaker is open. Pacing
    between two sends does not hold a test: a person is waiting for it (the next send paces
    after it)."""
    from campaignctl.breaker import Breaker
    from campaignctl.engine.decide import channel_hold
    from campaignctl.pacing import Limits
    from campaignctl.store import messages, meta

    lim = Limits.of(cfg.channels[channel])
    if lim.warmup is not None:  # the warm-up's limit of the day, from the channel's first send
        lim = lim.started(meta.warmup_start(conn, channel) or messages.first_send(conn, channel))
    breaker = Breaker.from_json(meta.breaker(conn, channel))
    hist = (
        messages.send_history(conn, channel, now - lim.lookback - timedelta(seconds=1))
        if lim.daily or lim.hourly
        else []
    )
    hold = channel_hold(lim, hist, breaker, now)
    if hold is not None:
        when = f"; it frees up at {hold.until:%Y-%m-%d %H:%M:%S} UTC" if hold.until else ""
        raise ChannelAtLimit(
            f"channel {channel}: {hold.reason}{when}", "run the test send again then"
        )


def send_test(
    cfg: Config,
    store: Store,
    msg: TestMessage,
    out: Outgoing,
    now: datetime,
    *,
    lock: bool = True,
) -> TestMessage:
    """Send a `prepare`d test message under the send lock, within the channel's limits.

    A provider's refusal is its `ChannelError` (exit 1, 75, or 78 with its `campaignctl auth`
    hint); a refused message stops counting against the limits, one that may have gone out
    (a timeout after the request was written) keeps counting.
    """
    from campaignctl.channels import open_channel
    from campaignctl.runner import SEND_BUSY, send_lock
    from campaignctl.store import locks, messages

    held = send_lock(store) if lock else None
    if held is not None:
        held.acquire(SEND_BUSY)
    try:
        channel = open_channel(cfg, msg.channel)  # credentials first: nothing recorded if refused
        try:
            # the limits read and the row written in one transaction, as the engine claims
            with store.write() as s:
                # counted and reserved under the channel's lock, as the engine's claims are
                locks.hold(s, [locks.channel(msg.channel)])
                _check_room(cfg, s, msg.channel, now)
                row = messages.add_test_send(s, msg.campaign, msg.step, msg.channel, now)
        except BaseException:
            channel.close()
            raise
        try:
            sent = _deliver(channel, replace(out, id=row))
        except _Refused as exc:
            with store.write() as s:
                messages.finish_test_send(s, row, now, None)
            raise exc.error from None
        finally:
            channel.close()
        with store.write() as s:
            messages.finish_test_send(s, row, now, sent.provider_id)
    finally:
        if held is not None:
            held.release()
    return replace(msg, provider_id=sent.provider_id)


class _Refused(Exception):
    """The provider refused the message: it never went out."""

    def __init__(self, error: ChannelError) -> None:
        self.error = error


def _deliver(channel: Any, out: Outgoing) -> Sent:
    """`channel.send`, its refusals told apart from outcomes that may have gone out."""
    where = f"test send to {out.to} via {out.channel}"
    try:
        sent: Sent = channel.send(out)
        return sent
    except ChannelError as exc:
        exc.message = f"{where}: {exc.message}"
        if exc.maybe_sent:
            raise  # it may have gone: the row keeps counting
        raise _Refused(exc) from None
    except Exception as exc:  # the outcome is unknown: it keeps counting, and the run says so
        raise ChannelError(
            ErrorKind.TRANSIENT,
            f"{where}: outcome unknown: {type(exc).__name__}: {exc}",
            hint="check the inbox before sending another test",
        ) from None
