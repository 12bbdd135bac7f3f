"""APScheduler wiring around `Engine.run_pass`: the loop `send` runs now and `daemon` reuses.

One APScheduler 3.x `BlockingScheduler` with an in-memory job store and a single job, the pass.
After each pass the job reschedules itself for the instant the engine says there is work (the
database stays the source of truth; there is never a job per message). `send` stops when nothing
is due now apart from pacing gaps; a daemon sets `stop_when_idle=False` and waits for the next
due time instead (see docs/engine.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from campaignctl.channels.base import Outgoing
from campaignctl.engine import Engine, PassResult

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.locking import FileLock
    from campaignctl.store import Store

#: A pass that starts within this long of its planned instant is stamped with that instant, so
#: scheduler latency does not pile up into the paced rate (10/s stays 10/s, not 9.8/s).
SLOT_TOLERANCE = timedelta(milliseconds=250)
#: How long a daemon sleeps at most before looking again (new leads, edits, other processes).
IDLE_POLL = timedelta(seconds=60)


def wall_clock() -> datetime:
    """The real clock, aware, UTC."""
    return datetime.now(UTC)


@dataclass
class RunOptions:
    """How long a run goes on: `send` stops when idle, a daemon never does."""

    stop_when_idle: bool = True
    limit: int | None = None  # messages sent, at most
    max_time: timedelta | None = None
    should_stop: Callable[[], bool] = lambda: False
    on_pass: Callable[[PassResult], None] = lambda _r: None


@dataclass
class RunResult:
    """Everything a run's passes did, added up."""

    total: PassResult = field(default_factory=PassResult)
    last: PassResult = field(default_factory=PassResult)
    passes: int = 0
    error: BaseException | None = None
    next_due: datetime | None = None


def run(
    engine: Engine,
    rng: random.Random,
    options: RunOptions,
    clock: Callable[[], datetime] = wall_clock,
) -> RunResult:
    """Run passes under an APScheduler scheduler until the options say stop."""
    from apscheduler.events import EVENT_JOB_REMOVED
    from apscheduler.executors.debug import DebugExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    # The debug executor runs the pass in this thread: signals reach it and one pass runs at once.
    scheduler = BlockingScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": DebugExecutor()},
        job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        timezone=UTC,
    )
    result = RunResult()
    started = clock()
    deadline = started + options.max_time if options.max_time is not None else None

    def tick(planned: datetime) -> None:
        try:
            nxt = _one_pass(planned)
        except BaseException as exc:  # APScheduler would only log it: keep it for the caller
            result.error = exc
            nxt = None
        if nxt is None:
            finished.append(True)  # shut down once APScheduler has removed this spent job
        else:
            scheduler.add_job(tick, "date", run_date=nxt, args=[nxt], name="engine pass")

    def _one_pass(planned: datetime) -> datetime | None:
        real = clock()
        now = planned if timedelta(0) <= real - planned <= SLOT_TOLERANCE else real
        left = None if options.limit is None else options.limit - result.total.total("sent")
        res = engine.run_pass(now, rng, limit=left, should_stop=options.should_stop)
        result.passes += 1
        result.total.merge(res)
        result.last = res
        result.next_due = res.next_due
        options.on_pass(res)
        if options.should_stop():
            return None
        if options.limit is not None and result.total.total("sent") >= options.limit:
            return None
        if res.auth_errors and not engine.channel_names():
            return None  # every channel refused us: nothing more to do in this run
        wake = res.pace_until if options.stop_when_idle else res.next_due
        if wake is None:
            if options.stop_when_idle:
                return None
            wake = now + IDLE_POLL
        if wake <= now and res.total("sent") == 0 and res.total("retry") == 0:
            # due but nothing went: do not spin; a daemon looks again a little later
            if options.stop_when_idle:
                return None
            wake = now + timedelta(seconds=1)
        wake = max(wake, now)
        if not options.stop_when_idle:
            wake = min(wake, now + IDLE_POLL)
        if deadline is not None and wake >= deadline:
            return None
        return wake

    finished: list[bool] = []

    def on_removed(_event: object) -> None:
        if finished:
            scheduler.shutdown(wait=False)

    scheduler.add_listener(on_removed, EVENT_JOB_REMOVED)
    first = clock()
    scheduler.add_job(tick, "date", run_date=first, args=[first], name="engine pass")
    scheduler.start()
    if result.error is not None:
        raise result.error
    return result


def send(
    cfg: Config,
    store: Store,
    options: RunOptions,
    *,
    campaigns: list[str] | None = None,
    channels: list[str] | None = None,
    lock: bool = True,
    rng: random.Random | None = None,
    clock: Callable[[], datetime] = wall_clock,
) -> RunResult:
    """`campaignctl send`: take the send lock, then run passes until nothing is due now.

    The lock (an flock beside the database) makes a second `send` or a daemon on the same
    database fail at once with exit 75; correctness never depends on it, the claims do that.
    """
    held = send_lock(store) if lock else None
    if held is not None:
        held.acquire(
            "another `campaignctl send` or the daemon is sending from this database; "
            "this run has nothing to add (cron will try again)"
        )
    engine = Engine(cfg, store, campaigns=campaigns, channel_names=channels)
    try:
        return run(engine, rng or random.Random(), options, clock)
    finally:
        engine.close()
        if held is not None:
            held.release()


def send_lock(store: Store) -> FileLock | None:
    """The database's send lock (beside a SQLite file; None for other databases): one `send`
    or one daemon at a time."""
    return store.send_lock()


@dataclass
class DryRun:
    """What `send --dry-run` found: the messages that would go now, and the pass's counts."""

    messages: list[Outgoing]
    result: PassResult


def dry_run(
    cfg: Config,
    store: Store,
    now: datetime,
    *,
    campaigns: list[str] | None = None,
    channels: list[str] | None = None,
    limit: int | None = None,
    rng: random.Random | None = None,
) -> DryRun:
    """One pass on a private copy of the database through memory channels: nothing is written.

    The copy makes the answer exact (same enrolment, limits, windows and order as a real pass)
    without touching the real database or any provider.
    """
    import tempfile
    from pathlib import Path

    from campaignctl.channels.memory import MemoryChannel
    from campaignctl.errors import UsageError

    if store.path is None and not store.in_memory:
        raise UsageError(
            f"{store.url}: --dry-run needs a SQLite database file",
            "run without --dry-run, or point settings.database at a SQLite file",
        )
    with tempfile.TemporaryDirectory(prefix="campaignctl-dry-") as tmp:
        shadow = store.private_copy(Path(tmp))
        fakes = {n: MemoryChannel(n, cfg.channel_kind(n)) for n in cfg.channels}
        engine = Engine(
            cfg,
            shadow,
            channels=fakes,
            campaigns=campaigns,
            channel_names=channels,
            worker="dry-run",
        )
        try:
            res = engine.run_pass(now, rng or random.Random(), limit=limit)
        finally:
            shadow.close()
    return DryRun([m for f in fakes.values() for m in f.sent], res)
