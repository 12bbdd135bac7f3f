"""The engine's context: config views, limits, hours, renderer, channel opener, lead info."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from campaignctl.breaker import Breaker
from campaignctl.channels.base import Channel
from campaignctl.config import Campaign, Config, Step
from campaignctl.pacing import Hours, Limits, draw_jitter, due_after, lead_zone, next_slot
from campaignctl.store import PENDING, Store, lead_context, meta, workers
from campaignctl.store import leads as store_leads
from campaignctl.store import messages as store_messages
from campaignctl.store.conn import Conn

if TYPE_CHECKING:
    from campaignctl.render import Rendered
    from campaignctl.web.links import Links

#: Claim at most this many messages per transaction (one commit covers them all).
BATCH = 100


# ---------------------------------------------------------------- who is sending


def _start_ticks(pid: int) -> str:
    """The process start time from /proc (guards against pid reuse); '' where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


#: The environment variable naming this machine for the workers on it (default: its hostname).
HOST_ENV = "CAMPAIGNCTL_HOST"


def host_name() -> str:
    """The name this machine's workers go by: `CAMPAIGNCTL_HOST` when set (a container whose
    hostname changes at every restart sets a stable one, so a restarted daemon recovers its
    host's claims at once), else the hostname. Never holds a colon (worker ids are split on it)."""
    return (os.environ.get(HOST_ENV) or socket.gethostname()).replace(":", "-")


def worker_id() -> str:
    """This process, as written in `claimed_by`: host, pid and start time."""
    pid = os.getpid()
    return f"{host_name()}:{pid}:{_start_ticks(pid)}"


def worker_host(worker: str) -> str:
    """The host part of a worker id (the whole id when it has none)."""
    return worker.partition(":")[0]


def worker_alive(worker: str) -> bool | None:
    """Whether the process that wrote `claimed_by` still runs; None when it is on another host."""
    host, _, rest = worker.partition(":")
    pid_s, _, ticks = rest.partition(":")
    if host != host_name() or not pid_s.isdigit():
        return None
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not ticks or _start_ticks(pid) in ("", ticks)


# ---------------------------------------------------------------- shared with the planner


def campaign_start(camp: Campaign, default_tz: str) -> datetime | None:
    """The campaign's `start_at` as an instant (a TOML local time is in settings.timezone)."""
    if camp.start_at is None:
        return None
    if camp.start_at.tzinfo is None:
        return camp.start_at.replace(tzinfo=ZoneInfo(default_tz))
    return camp.start_at


def by_priority(channels: Iterable[str], campaigns: Mapping[str, Campaign]) -> list[str]:
    """`channels` in the order a claim visits them: by the best priority of the campaigns with
    a step on each, then as in the file. With `settings.max_per_lead`, the first channel claimed
    takes a lead's slot, so a high-priority campaign's channel goes before a newsletter's."""
    best: dict[str, int] = {}
    for camp in campaigns.values():
        for st in camp.steps:
            best[st.channel] = min(best.get(st.channel, camp.priority), camp.priority)
    order = list(channels)
    return sorted(order, key=lambda ch: best.get(ch, 1 << 30))


@dataclass
class LeadInfo:
    id: int
    email: str | None
    phone: str | None
    timezone: str | None
    default_tz: str
    context: dict[str, Any]
    _tz: ZoneInfo | None = None

    @property
    def tz(self) -> ZoneInfo:
        """Looked up on first use: a phone number's zone costs tens of microseconds."""
        if self._tz is None:
            self._tz = lead_zone(self.timezone, self.phone, self.default_tz)
        return self._tz


def full_name(context: dict[str, Any]) -> str:
    """ "First Last" for an email's To header; empty when the lead has no name."""
    return " ".join(str(context[k]) for k in ("first_name", "last_name") if context.get(k))


def soonest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def ensure_utc(t: datetime) -> datetime:
    """An aware instant in UTC (naive input is taken as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class EngineContext:
    """What every stage of a pass reads: the campaign file's views (active campaigns, channels,
    limits, hours), the renderer, the channels opened on first use, leads as the engine sees
    them, each channel's send history and circuit breaker.

    `channels` replaces providers by name (the planner and `--dry-run` pass recording ones);
    `campaigns` and `channel_names` restrict a run (`send --campaign`, `--channel`).
    """

    def __init__(
        self,
        cfg: Config,
        store: Store,
        *,
        channels: Mapping[str, Channel] | None = None,
        campaigns: Iterable[str] | None = None,
        channel_names: Iterable[str] | None = None,
        worker: str | None = None,
        batch: int = BATCH,
        enrol_every: timedelta = timedelta(seconds=60),
        links: Links | None = None,
    ) -> None:
        from campaignctl.render import Renderer

        self.cfg = cfg
        self.store = store
        self.worker = worker or worker_id()
        pid = self.worker.partition(":")[2].partition(":")[0]
        self.worker_pid = int(pid) if pid.isdigit() else 0
        self.batch = batch
        self.enrol_every = enrol_every
        # with [server], the signed links emails carry (`web.links`; `Runner` reads the keys)
        self.renderer = Renderer(cfg, links)
        self.campaign_filter = set(campaigns) if campaigns is not None else None
        self.channel_filter = set(channel_names) if channel_names is not None else None
        for name in self.campaign_filter or ():
            cfg.campaign(name)  # a NotFoundError naming the typo
        for name in self.channel_filter or ():
            if name not in cfg.channels:
                from campaignctl.config import did_you_mean
                from campaignctl.errors import NotFoundError

                raise NotFoundError(
                    f"{cfg.path}: no channel named {name!r}{did_you_mean(name, cfg.channels)}",
                    "the channels are the [channels.NAME] tables of the campaign file",
                )
        self._channels: dict[str, Channel] = dict(channels or {})
        self.limits = {name: Limits.of(ch) for name, ch in cfg.channels.items()}
        self.hours = {name: Hours(ch.window, ch.days) for name, ch in cfg.channels.items()}
        self.cap = cfg.settings.max_per_lead
        self.default_tz = cfg.settings.timezone
        self._jitters: dict[tuple[str, datetime], timedelta] = {}
        self._last_enrol: datetime | None = None
        self._stopped: set[str] = set()
        # each channel's breaker as the last claim saw it (a batch stops sending when it trips)
        self._breakers: dict[str, Breaker] = {}
        self._asked: dict[int, datetime] = {}  # uncertain messages the channel could not settle
        # the same links sign the tracked clicks and opens (built on first use without them)
        self._tracking_links: Links | None = links

    # -------------------------------------------------------------- configuration views

    def active_campaigns(self) -> dict[str, Campaign]:
        """The campaigns this engine sends for: active, with steps, within the filter."""
        return {
            name: c
            for name, c in self.cfg.campaigns.items()
            if c.status == "active"
            and c.steps
            and (self.campaign_filter is None or name in self.campaign_filter)
        }

    def channel_names(self) -> list[str]:
        return [
            n
            for n in self.cfg.channels
            if (self.channel_filter is None or n in self.channel_filter) and n not in self._stopped
        ]

    def channel(self, name: str) -> Channel:
        """The adapter for `name`, opened on first use."""
        if name not in self._channels:
            from campaignctl.channels import open_channel

            self._channels[name] = open_channel(self.cfg, name)
        return self._channels[name]

    def tracked(self, message_id: int, rendered: Rendered) -> Rendered:
        """An email as `[server]`'s `track_clicks` and `track_opens` ask: its links signed
        redirects for `message_id`, its HTML part with the open pixel (`web.rewrite`). The keys
        are read on the first tracked email: a missing one is a SetupError (exit 78), raised
        in the claim's transaction, so nothing is sent."""
        server = self.cfg.server
        if rendered.kind != "email" or server is None:
            return rendered
        if not (server.track_clicks or server.track_opens):
            return rendered
        from dataclasses import replace

        from campaignctl.web.links import Links
        from campaignctl.web.rewrite import Tracker

        if self._tracking_links is None:
            self._tracking_links = Links.for_config(self.cfg, os.environ)
        assert self._tracking_links is not None
        tracker = Tracker(
            self._tracking_links,
            message_id,
            clicks=server.track_clicks,
            opens=server.track_opens,
            keep=(rendered.unsubscribe_url or "",),
        )
        text, html = tracker.bodies(rendered.text, rendered.html)
        return replace(rendered, text=text, html=html)

    def retry_channels(self) -> None:
        """Give channels stopped by refused credentials another chance (a daemon does, later)."""
        self._stopped.clear()

    def close(self) -> None:
        """Close every channel this engine opened."""
        for ch in self._channels.values():
            ch.close()

    def start_at(self, camp: Campaign) -> datetime | None:
        return campaign_start(camp, self.default_tz)

    def _lead(self, row: Any) -> LeadInfo:
        ctx = lead_context(row)
        return LeadInfo(row.id, row.email, row.phone, row.timezone, self.default_tz, ctx)

    def _leads(self, conn: Conn, ids: Iterable[int]) -> dict[int, LeadInfo]:
        return {row.id: self._lead(row) for row in store_leads.by_ids(conn, list(set(ids)))}

    # -------------------------------------------------------------- this worker

    def beat(self, conn: Conn, now: datetime) -> None:
        """This worker's heartbeat, in the caller's write transaction (`store.workers`)."""
        workers.beat(conn, self.worker, worker_host(self.worker), self.worker_pid, now)

    # -------------------------------------------------------------- limits

    def warm_up(self, conn: Conn, channel: str, now: datetime, *, record: bool = True) -> None:
        """Fill in a warming-up channel's first send (from `meta`; a channel that sent before
        its warm-up was configured starts at its earliest sent message, recorded then). Once
        known it never changes, so it is read only until then."""
        lim = self.limits[channel]
        if lim.warmup is None or lim.first_send is not None:
            return
        first = meta.warmup_start(conn, channel)
        if first is None:
            first = store_messages.first_send(conn, channel)
            if first is None:
                return
            if record:
                first = meta.set_warmup_start(conn, channel, first, now)
        self.limits[channel] = lim.started(first)

    def history(self, conn: Conn, channel: str, now: datetime) -> list[datetime]:
        """The sends the channel's limits look at, at `now` (none for an unlimited channel)."""
        lim = self.limits[channel]
        if not lim.counted:
            return []
        return store_messages.send_history(conn, channel, now - lim.lookback - timedelta(seconds=1))

    def _jitter(self, channel: str, last: datetime, rng: random.Random) -> timedelta:
        """The random extra gap after the send at `last`, drawn once so re-checks agree."""
        key = (channel, last)
        if key not in self._jitters:
            if len(self._jitters) > 1024:
                self._jitters.clear()
            self._jitters[key] = draw_jitter(self.limits[channel], rng)
        return self._jitters[key]

    def _slot(
        self, channel: str, hist: list[datetime], now: datetime, rng: random.Random
    ) -> datetime:
        lim = self.limits[channel]
        jitter = self._jitter(channel, hist[-1], rng) if hist else timedelta(0)
        return next_slot(lim, hist, now, jitter)

    @staticmethod
    def breaker(conn: Conn, channel: str) -> Breaker:
        """The channel's circuit breaker as stored (closed when never tripped)."""
        return Breaker.from_json(meta.breaker(conn, channel))

    @staticmethod
    def _save_breaker(conn: Conn, channel: str, breaker: Breaker, now: datetime) -> None:
        meta.set_breaker(conn, channel, breaker.to_json(), now)

    @staticmethod
    def _new_message(
        campaign: str, step: Step, index: int, lead_id: int, due: datetime, now: datetime
    ) -> dict[str, Any]:
        return {
            "campaign": campaign,
            "step": step.name,
            "step_index": index,
            "lead_id": lead_id,
            "channel": step.channel,
            "state": PENDING,
            "due_at": due,
            "attempts": 0,
            "updated_at": now,
        }

    def _due(self, base: datetime, step: Step, lead: LeadInfo, start: datetime | None) -> datetime:
        hours = self.hours[step.channel]
        # an always-open channel needs no time zone (and no phone-number lookup)
        return due_after(base, step.delay, hours, UTC if hours.always else lead.tz, start)
