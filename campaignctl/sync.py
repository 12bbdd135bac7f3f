"""`sync`: read what came back on each channel since its cursor and record it (see `inbound`).

Per channel: the provider's reading side (`Inbox.fetch_inbound`) is called outside any database
transaction; classification and recording, with the new cursor, are then written in one
transaction, so a sync that fails half way records nothing and the next one starts from the
old cursor. Recording is idempotent, so the overlap providers need is harmless.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from campaignctl.channels.base import ChannelError, Inbox, Received
from campaignctl.errors import ExitCode

if TYPE_CHECKING:
    from campaignctl.classify import Inbound, Known
    from campaignctl.config import Config
    from campaignctl.inbound import Recorded
    from campaignctl.store import Store
    from campaignctl.store.conn import Transaction


@dataclass
class ChannelSync:
    """What one channel's sync found."""

    channel: str
    provider: str
    reads: bool  # False: the provider cannot read replies (see `note`)
    events: Counter[str] = field(default_factory=Counter)  # kind -> newly recorded
    duplicates: int = 0
    unknown_leads: int = 0
    stopped: int = 0
    skipped: int = 0
    error: ChannelError | None = None
    note: str | None = None
    more: bool = False  # the provider has more than one sync reads: the next one goes on

    @property
    def new(self) -> int:
        return sum(self.events.values())


@dataclass
class SyncResult:
    channels: list[ChannelSync]

    def exit_code(self) -> ExitCode:
        """78 when credentials were missing or refused (a person must act), else 75 when a
        provider was unreachable, else 1 for any other provider error."""
        codes = {c.error.exit_code for c in self.channels if c.error is not None}
        for code in (ExitCode.CONFIG, ExitCode.TEMPFAIL, ExitCode.FAILED):
            if code in codes:
                return code
        return ExitCode.OK


def reads_replies(cfg: Config, channel: str) -> str | None:
    """None when `sync` can read the channel's replies; else the sentence that says why not."""
    from campaignctl.channels.registry import get

    return get(cfg.channels[channel].provider).cannot_read


def sync(
    cfg: Config,
    store: Store,
    now: datetime,
    *,
    channels: Iterable[str] | None = None,
    open_inbox: Callable[[Config, str], object] | None = None,
) -> SyncResult:
    """One sync pass over `channels` (default: every channel); a channel's error is kept in its
    result and the other channels go on. `open_inbox` replaces `open_channel` (tests)."""
    from campaignctl.channels import open_channel
    from campaignctl.config import did_you_mean
    from campaignctl.errors import NotFoundError

    names = list(channels) if channels is not None else list(cfg.channels)
    for name in names:
        if name not in cfg.channels:
            raise NotFoundError(
                f"{cfg.path}: no channel named {name!r}{did_you_mean(name, cfg.channels)}",
                "the channels are the [channels.NAME] tables of the campaign file",
            )
    opener = open_inbox or open_channel
    out = []
    for name in names:
        res = ChannelSync(name, cfg.channels[name].provider, reads=True)
        out.append(res)
        note = reads_replies(cfg, name)
        if note is not None:
            res.reads, res.note = False, note
            continue
        try:
            channel = opener(cfg, name)
        except ChannelError as exc:
            res.error = exc
            continue
        try:
            if not isinstance(channel, Inbox):
                res.reads, res.note = False, "this channel cannot read replies"
                continue
            sync_channel(cfg, store, channel, now, res)
        except ChannelError as exc:
            res.error = exc
        finally:
            close = getattr(channel, "close", None)
            if close is not None:
                close()
    return SyncResult(out)


def sync_channel(cfg: Config, store: Store, inbox: Inbox, now: datetime, res: ChannelSync) -> None:
    """Fetch since the stored cursor, classify, record, and move the cursor: one transaction."""
    from campaignctl.inbound import get_cursor, load_known, set_cursor, settle_early
    from campaignctl.store import locks, meta

    name = inbox.name
    with store.read() as s:
        cursor = get_cursor(s, name)
    fetched = inbox.fetch_inbound(cursor, now)
    items = fetched.items
    with store.write() as s:
        # one process records a channel's inbound at a time (its events are recorded once);
        # when another synced it since our read, its fetch covered ours up to its cursor
        locks.hold(s, [locks.sync(name)])
        if get_cursor(s, name) != cursor:
            return
        done = record_received(cfg, s, name, items, load_known(s, name), now)
        # status callbacks kept before their sid was ours (the engine settles its batches')
        done.add(settle_early(cfg, s, now, channel=name))
        set_cursor(s, name, fetched.cursor, now)
        meta.set_last_sync(s, name, now)
    res.events.update(done.events)
    res.duplicates += done.duplicates
    res.unknown_leads += done.unknown_leads
    res.stopped += done.stopped
    res.skipped += done.skipped
    res.more = fetched.more


def record_received(
    cfg: Config,
    session: Transaction,
    channel: str,
    items: Iterable[Received],
    known: Known,
    now: datetime,
    stop_on: Mapping[str, Collection[str]] | None = None,
) -> Recorded:
    """Classify what `channel`'s provider handed back and record it (`inbound.record`), in the
    caller's transaction: a sync's fetched items, or one webhook's (`web.twilio`), the same
    way. `stop_on` defaults to the campaign file's."""
    from campaignctl.inbound import record
    from campaignctl.suppression import stop_on_of

    classified = [c for c in (_classify(cfg, channel, r, known, now) for r in items) if c]
    # in the order they happened: a START after a STOP leaves the lead opted in
    classified.sort(key=lambda c: c.occurred_at)
    return record(
        session,
        classified,
        stop_on=stop_on_of(cfg) if stop_on is None else stop_on,
        now=now,
        default_region=cfg.settings.default_region,
    )


def _classify(
    cfg: Config, channel: str, r: Received, known: Known, now: datetime
) -> Inbound | None:
    from campaignctl.channels.registry import get

    classify = get(cfg.channels[channel].provider).classify
    return classify(cfg, channel, r, known, now) if classify else None


def last_syncs(store: Store) -> dict[str, str]:
    """channel -> ISO time of its last successful sync."""
    from campaignctl.store import meta

    with store.reads() as s:
        return meta.last_syncs(s)
