"""The runner `send` and `daemon` share: the send lock, the engine with its channels, and the
loop of passes run with them.

`Runner` is a context manager: entering takes the database's send lock and builds the engine,
leaving closes the channels and releases the lock. `Runner.run` runs passes until the options
say stop; after each pass it sleeps until the instant the engine says there is work (the
database stays the source of truth; there is never a job per message). `send` runs it once and
stops when nothing is due now apart from pacing gaps; the daemon's APScheduler runs it on every
tick (`daemon.py`) and never starts a scheduler of its own inside one (see docs/engine.md).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from campaignctl.channels.base import Outgoing
from campaignctl.clock import wall_clock as wall_clock
from campaignctl.engine import Engine, PassResult

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.locking import Lock
    from campaignctl.store import Store

#: A pass that starts within this long of its planned instant is stamped with that instant, so
#: sleeping latency does not pile up into the paced rate (10/s stays 10/s, not 9.8/s).
SLOT_TOLERANCE = timedelta(milliseconds=250)
#: How long a daemon sleeps at most before looking again (new leads, edits, other processes).
IDLE_POLL = timedelta(seconds=60)
#: A pass ends after the send that reaches this much time (or the run's `max_time`; the rest of
#: its batch is released), and the next pass takes what is left with a fresh `now`: a pass
#: stamps its sends and its worker's heartbeat with its `now`, so an unlimited channel's
#: hours-long pass would record every send at its start and look dead to the other daemons
#: (`WORKER_TIMEOUT`), and the daemon's other jobs (sync, hooks) would wait for it.
PASS_TIME = timedelta(seconds=60)
#: A stop request is seen within this long while the loop sleeps until the next pass.
STOP_POLL = 0.5
#: Why a second sender is refused: another `send`, or the daemon, holds the lock.
SEND_BUSY = (
    "another `campaignctl send` or the daemon is sending from this database; "
    "this run has nothing to add (cron will try again)"
)


@dataclass
class RunOptions:
    """How long a run goes on: `send` stops when idle, a daemon never does."""

    stop_when_idle: bool = True
    limit: int | None = None  # messages sent, at most
    max_time: timedelta | None = None
    should_stop: Callable[[], bool] = lambda: False
    on_pass: Callable[[PassResult], None] = lambda _r: None
    #: Hears what happened to each message as its batch commits (sent, failed, reconciled...);
    #: the passes keep none of them, whatever their size.
    on_event: Callable[[dict[str, Any]], None] = lambda _e: None


@dataclass
class RunResult:
    """Everything a run's passes did, added up."""

    total: PassResult = field(default_factory=PassResult)
    last: PassResult = field(default_factory=PassResult)
    passes: int = 0
    next_due: datetime | None = None


class Runner:
    """The send lock, the engine and its channels, and the passes run with them.

    `with Runner(cfg, store) as runner: runner.run(options)`. The lock (an flock beside the
    database) makes a second `send` or daemon on the same database fail at once with exit 75;
    correctness never depends on it, the claims do that. `lock=False` runs without it
    (`send --no-lock`, several workers). With `[server]`, the signing keys are read from
    `environ` (default: the process's) when the engine is built: a missing one is a SetupError
    (exit 78) before anything is sent.
    """

    def __init__(
        self,
        cfg: Config,
        store: Store,
        *,
        campaigns: Iterable[str] | None = None,
        channels: Iterable[str] | None = None,
        lock: bool = True,
        busy: str = SEND_BUSY,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = wall_clock,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.environ = os.environ if environ is None else environ
        self.campaigns = list(campaigns) if campaigns is not None else None
        self.channels = list(channels) if channels is not None else None
        self.rng = rng or random.Random()
        self.clock = clock
        self.lock = send_lock(store) if lock else None
        self._busy = busy
        self._engine: Engine | None = None

    def __enter__(self) -> Runner:
        if self.lock is not None:
            self.lock.acquire(self._busy)
        try:
            self._engine = self._build(self.cfg)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._engine is not None:
                self._leave(self._engine)
                self._engine.close()
                self._engine = None
        finally:
            if self.lock is not None:
                self.lock.release()

    def _leave(self, engine: Engine) -> None:
        """This worker stops: what it left `sending` (a pass interrupted mid-send) becomes
        `uncertain`, and its row goes. A database that fails now is left as it is: the next
        worker finds the claims by their dead process, or by the heartbeat's age."""
        from campaignctl.errors import CampaignctlError

        try:
            engine.abandon_claims(self.clock())
        except (CampaignctlError, OSError):
            pass
        except Exception as exc:  # the driver's own errors (a connection gone)
            if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "sqlite3", "psycopg"):
                raise

    def beat(self, now: datetime) -> None:
        """The worker's heartbeat, in a transaction of its own (the daemon's, after a tick)."""
        with self.store.write() as s:
            self.engine.beat(s.connection(), now)

    @property
    def engine(self) -> Engine:
        """The engine of this run (only inside the `with` block)."""
        assert self._engine is not None, "enter the runner first"
        return self._engine

    def use(self, cfg: Config) -> None:
        """Go on with a new campaign file (the daemon's reload): a new engine, the old closed."""
        engine = self._build(cfg)
        if self._engine is not None:
            self._engine.close()
        self._engine, self.cfg = engine, cfg

    def run(self, options: RunOptions) -> RunResult:
        """Run passes until the options say stop."""
        return run(self.engine, self.rng, options, self.clock)

    def _build(self, cfg: Config) -> Engine:
        from campaignctl.web.links import Links

        return Engine(
            cfg,
            self.store,
            campaigns=self.campaigns,
            channel_names=self.channels,
            links=Links.for_config(cfg, self.environ),
        )


def run(
    engine: Engine,
    rng: random.Random,
    options: RunOptions,
    clock: Callable[[], datetime] = wall_clock,
) -> RunResult:
    """Run `engine`'s passes, sleeping between them until the next has work, until the options
    say stop. In the calling thread: signals reach the pass, and passes never overlap."""
    result = RunResult()
    started = clock()
    deadline = started + options.max_time if options.max_time is not None else None

    def one_pass(planned: datetime) -> datetime | None:
        real = clock()
        now = planned if timedelta(0) <= real - planned <= SLOT_TOLERANCE else real
        left = None if options.limit is None else options.limit - result.total.total("sent")
        pass_end = real + PASS_TIME if deadline is None else min(real + PASS_TIME, deadline)
        res = engine.run_pass(
            now,
            rng,
            limit=left,
            should_stop=options.should_stop,
            on_event=options.on_event,
            ends=lambda: clock() >= pass_end,
        )
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
        if deadline is not None and clock() >= deadline:
            return None  # the pass itself used up `max_time`
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

    planned: datetime | None = clock()
    while planned is not None:
        planned = one_pass(planned)
        if planned is not None and not _sleep_until(planned, clock, options.should_stop):
            break
    return result


def _sleep_until(
    when: datetime, clock: Callable[[], datetime], should_stop: Callable[[], bool]
) -> bool:
    """Sleep until `when` (by `clock`); False when a stop was requested meanwhile."""
    end = time.monotonic() + max(0.0, (when - clock()).total_seconds())
    while not should_stop():
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, STOP_POLL))
    return False


def send_lock(store: Store) -> Lock | None:
    """The database's send lock (beside a SQLite file): one `send` or one daemon at a time;
    None on PostgreSQL, where they run side by side, and in memory."""
    return store.send_lock()


#: Messages a dry run claims per transaction: its database is a private copy nobody else waits
#: on, so a batch ten times a real pass's costs ten times fewer round trips.
DRY_RUN_BATCH = 1000


def scratch_dir(environ: Mapping[str, str]) -> str | None:
    """Where a dry run's copy of the database goes: `$TMPDIR` when it is set, else `/var/tmp`
    (on disk, by the file system hierarchy's convention, where `/tmp` is often memory: a
    tmpfs would hold a million leads' copy in RAM), else Python's default (None)."""
    if environ.get("TMPDIR"):
        return environ["TMPDIR"]
    var = "/var/tmp"
    return var if os.path.isdir(var) and os.access(var, os.W_OK | os.X_OK) else None


@dataclass
class DryRun:
    """What `send --dry-run` found: how many messages would go now, the first of them (`keep`),
    in the order they would go, and the pass's counts."""

    count: int = 0
    messages: list[Outgoing] = field(default_factory=list)
    result: PassResult = field(default_factory=PassResult)


def dry_run(
    cfg: Config,
    store: Store,
    now: datetime,
    *,
    campaigns: list[str] | None = None,
    channels: list[str] | None = None,
    limit: int | None = None,
    rng: random.Random | None = None,
    environ: Mapping[str, str] | None = None,
    keep: int | None = None,
    on_message: Callable[[Outgoing], None] | None = None,
    on_event: Callable[[dict[str, Any]], None] = lambda _e: None,
) -> DryRun:
    """One pass on a private copy of the database through memory channels: nothing is written.

    The copy makes the answer exact (same enrolment, limits, windows and order as a real pass)
    without touching the real database or any provider; it is made in `scratch_dir`, and
    removed at the end. Each message that would go is counted and handed to `on_message` as
    the pass reaches it; the result keeps the first `keep` (every one for None), and
    `on_event` hears what happened to each, so that a dry run of a million messages need hold
    none of them.
    """
    import tempfile
    from pathlib import Path

    from campaignctl.channels.memory import MemoryChannel
    from campaignctl.web.links import Links

    dry = DryRun()

    def would_send(msg: Outgoing) -> None:
        dry.count += 1
        if keep is None or len(dry.messages) < keep:
            dry.messages.append(msg)
        if on_message is not None:
            on_message(msg)

    env = os.environ if environ is None else environ
    links = Links.for_config(cfg, env)
    with tempfile.TemporaryDirectory(prefix="campaignctl-dry-", dir=scratch_dir(env)) as tmp:
        shadow = store.private_copy(Path(tmp))
        fakes = {n: MemoryChannel(n, cfg.channel_kind(n), would_send) for n in cfg.channels}
        engine = Engine(
            cfg,
            shadow,
            channels=fakes,
            campaigns=campaigns,
            channel_names=channels,
            worker="dry-run",
            batch=DRY_RUN_BATCH,
            links=links,
        )
        try:
            dry.result = engine.run_pass(
                now, rng or random.Random(), limit=limit, on_event=on_event
            )
        finally:
            shadow.close()
    return dry
