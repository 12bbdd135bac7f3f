"""`campaignctl daemon`: the engine's pass on every tick and a `sync` every sync_interval.

One APScheduler 3.x `BlockingScheduler` with the in-memory job store and two interval jobs
(`max_instances=1`, `coalesce=True`); jobs run in the main thread (the debug executor), so a
signal reaches the send in flight and the two jobs never overlap. The database stays the source
of truth: there is never a job per message, nothing is pickled. The daemon holds one
`runner.Runner` for its whole life (the send lock, the engine and its channels); each tick runs
the runner's loop of passes, without a scheduler of its own, until nothing is due now apart from
pacing gaps (at most one tick long), so a paced channel keeps its rate between ticks.

Because of that lock, a `send` started meanwhile, or a second daemon, exits 75 at once naming
this pid. On PostgreSQL there is no send lock: daemons on several hosts run side by side, each a
worker beating in the `worker` table (after every tick, and in its claims), and a live one
recovers a dead one's claims (docs/scaling.md). The campaign file is re-read when it changes;
an invalid file is logged and the previous one kept. Its heartbeat (pid, started_at,
last_pass_at, last_sync_at) lives in `Meta`, where `status` reads it.

A channel whose credentials are missing or refused needs a person: the daemon stops claiming
on it (the engine retries it once per sync interval), logs one error line then and once per
sync interval while it lasts, records it in `Meta` (`needs_person.CHANNEL`, which `status`
shows) and keeps serving the other channels. Only when every channel with work (those the
active campaigns' steps use) needs a person does it stop, with exit 78.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from campaignctl.clock import wall_clock
from campaignctl.errors import CampaignctlError, ExitCode, UsageError

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.engine import PassResult
    from campaignctl.runner import Runner
    from campaignctl.store import Store
    from campaignctl.sync import SyncResult

#: How late a tick or sync may start and still run (see `Daemon._add_jobs`).
MISFIRE_GRACE = timedelta(seconds=30)
HEARTBEAT_KEYS = ("pid", "started_at", "last_pass_at", "last_sync_at", "stopped_at")
#: `Meta` key prefix of the channels that need a person ({"message", "hint"} as JSON).
#: Send events that are errors (logged with their error, shown as a channel's last error).
ERROR_EVENTS = frozenset({"failed", "permanent", "opted_out", "auth", "uncertain", "transient"})


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class EventLog:
    """One line per event: `2026-11-21T16:00:00Z send welcome/hello email lead=12 message=34
    sent`, or one JSON object per line with `json=True` (journald, log shippers)."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    json: bool = False
    clock: Callable[[], datetime] = wall_clock
    printer: Callable[[str], None] | None = None  # the live view prints above itself

    def emit(self, event: str, message: str, **fields: Any) -> None:
        ts = _iso(self.clock())
        if self.json:
            line = json.dumps(
                {"ts": ts, "event": event, "message": message, **fields},
                ensure_ascii=False,
                default=str,
            )
        else:
            line = f"{ts} {event} {message}"
            if fields.get("hint"):
                line += f" (hint: {fields['hint']})"
        if self.printer is not None:
            self.printer(line)
        else:
            self.out.write(line + "\n")
            self.out.flush()


def _meta_write(store: Store, values: dict[str, str], now: datetime) -> None:
    from campaignctl.store import meta

    with store.write() as s:
        meta.set_heartbeat(s, values, now)


def note_needs_person(store: Store, channel: str, err: CampaignctlError | None) -> None:
    """Record (or with None, clear) that `channel` needs a person, its credentials missing or
    refused: the daemon, `send` (from cron too) and `auth` keep it; `status` shows it."""
    from campaignctl.store import meta

    value = None if err is None else json.dumps({"message": err.message, "hint": err.hint})
    with store.write() as s:
        meta.set_needs_person(s, channel, value, wall_clock())


def needs_person(store: Store) -> dict[str, dict[str, str | None]]:
    """Channels found needing a person (`note_needs_person`): {channel: {"message", "hint"}}."""
    from campaignctl.store import meta

    with store.reads() as s:
        rows = meta.needs_person(s)
    out = {}
    for channel, value in rows.items():
        try:
            d = json.loads(value)
            out[channel] = {"message": d["message"], "hint": d["hint"]}
        except (ValueError, KeyError, TypeError):
            continue
    return out


def daemon_status(store: Store) -> dict[str, Any]:
    """`status`'s daemon part: running (the send lock is held by the pid of the heartbeat),
    pid, started_at, last_pass_at, last_sync_at (ISO UTC, or None)."""
    from campaignctl.store import meta

    with store.reads() as s:
        beat: dict[str, Any] = dict.fromkeys(HEARTBEAT_KEYS)
        beat |= meta.heartbeat(s)
    lock = store.send_lock()
    if lock is None:  # PostgreSQL: no send lock; a worker that beat lately is running
        running = not store.in_memory and bool(live_workers(store, wall_clock()))
    else:
        running = bool(lock.is_held() and beat["pid"] and lock.holder() == beat["pid"])
    return {"running": running, **{k: beat[k] for k in HEARTBEAT_KEYS}}


def live_workers(store: Store, now: datetime) -> list[Any]:
    """The `send` and daemon processes on the database whose heartbeat is recent: (id, host,
    pid, started_at, heartbeat_at), latest first."""
    from campaignctl.engine.recovery import WORKER_TIMEOUT
    from campaignctl.store import workers

    with store.read() as s:
        return [w for w in workers.listing(s) if now - w.heartbeat_at <= WORKER_TIMEOUT]


def channel_view(cfg: Config, store: Store, now: datetime) -> list[dict[str, Any]]:
    """Per channel: sent in the last 24 hours, its daily limit (a warm-up's of the day), queue,
    next due (live view)."""
    from campaignctl.pacing import Limits
    from campaignctl.store import messages, meta

    with store.read() as s:
        queue = {ch: (n, due) for ch, n, due in messages.queues(s)}
        sent = messages.sent_counts(s, now - timedelta(days=1))
        firsts = {
            name: meta.warmup_start(s, name) or messages.first_send(s, name)
            for name, ch in cfg.channels.items()
            if ch.warmup is not None
        }
    rows = []
    for name, ch in cfg.channels.items():
        n, due = queue.get(name, (0, None))
        rows.append(
            {
                "channel": name,
                "sent_24h": sent.get(name, 0),
                "daily_limit": Limits.of(ch).started(firsts.get(name)).daily_at(now),
                "queue": n,
                "next_due": due,
            }
        )
    return rows


class Daemon:
    """The scheduler, the engine and the campaign file it was built from; see the module doc."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        log: EventLog,
        *,
        clock: Callable[[], datetime] = wall_clock,
        rng: random.Random | None = None,
        on_change: Callable[[], None] = lambda: None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if store.in_memory:
            raise UsageError(
                f"{store.where}: the daemon needs a database other processes can see "
                "(an in-memory one is gone at exit)",
                "point settings.database at a SQLite file or a postgresql:// URL",
            )
        self.cfg = cfg
        self.store = store
        self.log = log
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_change = on_change  # the live view redraws
        self.environ = os.environ if environ is None else environ  # the hooks' keys
        #: Hooks whose last POST failed: logged once until one succeeds again.
        self._hooks_failing: set[str] = set()
        self.stop_requested = False
        self.interrupted = False
        #: Set when a person must act (credentials missing or refused): the daemon stops and
        #: exits with it, so systemd shows a failed unit instead of a running one that sends
        #: nothing (`RestartPreventExitStatus=78` keeps it from restarting in a loop).
        self.exit_code = ExitCode.OK
        self.last_errors: dict[str, str] = {}
        #: Channels whose credentials are missing or refused, and those already logged in
        #: this sync interval (one error line per interval while it lasts).
        self.needs_person: dict[str, CampaignctlError] = {}
        self._reported: set[str] = set()
        self.next_due: datetime | None = None
        self._scheduler: Any = None
        self._runner: Runner | None = None
        self._digest = self._file_digest()

    # -------------------------------------------------------------- life

    def run(self) -> None:
        """Take the send lock and run until `request_stop` (or a second signal)."""
        from apscheduler.executors.debug import DebugExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.schedulers.blocking import BlockingScheduler

        from campaignctl.runner import Runner

        runner = Runner(
            self.cfg,
            self.store,
            busy="one daemon per database: it already sends and syncs; "
            "`campaignctl status` shows it, stop it first to start another",
            rng=self.rng,
            clock=self.clock,
        )
        # "job missed by 0.1 s" warnings are noise (coalescing is the point), and our jobs catch
        # their own errors: what APScheduler could still report is a traceback, never wanted.
        logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
        with runner:
            self._runner = runner
            # SQLite: the send lock's holder; PostgreSQL has no send lock (daemons run side
            # by side, each a worker with its own heartbeat: docs/scaling.md)
            pid = runner.lock.holder() if runner.lock is not None else str(os.getpid())
            try:
                for ch in needs_person(self.store):  # a previous daemon's: tried again now
                    note_needs_person(self.store, ch, None)
                started = self.clock()
                _meta_write(
                    self.store, {"pid": str(pid or ""), "started_at": started.isoformat()}, started
                )
                tick, every = self.cfg.daemon.tick, self.cfg.daemon.sync_interval
                self.log.emit(
                    "daemon",
                    f"started pid={pid} tick={_dur(tick)} sync_interval={_dur(every)} "
                    f"config={self.cfg.path}",
                )
                self._scheduler = BlockingScheduler(
                    jobstores={"default": MemoryJobStore()},
                    executors={"default": DebugExecutor()},
                    timezone=UTC,
                )
                self._add_jobs(started)
                if not self.stop_requested:
                    try:
                        self._scheduler.start()
                    except KeyboardInterrupt:
                        self.interrupted = True
            finally:
                now = self.clock()
                _meta_write(self.store, {"stopped_at": now.isoformat()}, now)
        self.log.emit("daemon", "stopped" + (" at once" if self.interrupted else ""))

    def request_stop(self) -> None:
        """First signal: let the message in flight finish, run nothing more, then exit."""
        self.stop_requested = True
        if self._scheduler is not None and self._scheduler.running:
            # Not from the signal handler itself: shutdown takes locks the interrupted main
            # thread may hold. This thread waits for the job in flight, then stops the loop.
            threading.Thread(
                target=self._scheduler.shutdown, kwargs={"wait": False}, daemon=True
            ).start()

    def _add_jobs(self, first: datetime) -> None:
        tick, every = self.cfg.daemon.tick, self.cfg.daemon.sync_interval
        jobs = (
            (self._tick, "tick", tick),
            (self._sync, "sync", every),
            (self._hooks, "hooks", tick),
        )
        for func, job, interval in jobs:
            self._scheduler.add_job(
                func,
                "interval",
                seconds=interval.total_seconds(),
                id=job,
                name=job,
                next_run_time=first,
                max_instances=1,
                # The jobs share one thread, so one often starts late while the other runs: a
                # late run still happens (once: coalesce) unless it is far behind (a suspended
                # machine), when the next regular run time is taken instead.
                coalesce=True,
                misfire_grace_time=int(max(MISFIRE_GRACE, 2 * interval).total_seconds()),
            )

    # -------------------------------------------------------------- jobs

    def _tick(self) -> None:
        if self.stop_requested:
            return
        try:
            self.reload_if_changed()
            assert self._runner is not None
            from campaignctl.runner import RunOptions

            options = RunOptions(
                stop_when_idle=True,
                max_time=self.cfg.daemon.tick,
                should_stop=lambda: self.stop_requested,
                on_pass=self._on_pass,
                on_event=self._on_event,
            )
            result = self._runner.run(options)  # the loop of passes: no scheduler inside ours
            self.next_due = result.next_due
            now = self.clock()
            self._beat(now)
        except KeyboardInterrupt:
            self._stop_at_once()
        except CampaignctlError as exc:
            self.log.emit("error", exc.message, hint=exc.hint)
            self._needs_a_person(exc)
        except Exception as exc:  # one bad pass must not end months of running
            self.log.emit(
                "error", f"internal error in the engine pass: {type(exc).__name__}: {exc}"
            )
        self.on_change()
        self._stop_if_a_person_must_act()

    def _beat(self, now: datetime) -> None:
        """After each tick: the heartbeat `status` shows, and this worker's in `worker` (which
        other daemons on the database judge its claims by), in one transaction."""
        from campaignctl.store import meta

        assert self._runner is not None
        with self.store.write() as s:
            meta.set_heartbeat(s, {"last_pass_at": now.isoformat()}, now)
            self._runner.engine.beat(s.connection(), now)

    def _sync(self) -> None:
        from campaignctl.sync import sync

        if self.stop_requested:
            return
        try:
            assert self._runner is not None
            # refused credentials stop a channel for the pass; fixed ones work again now
            self._runner.engine.retry_channels()
            self._reported.clear()
            now = self.clock()
            result = sync(self.cfg, self.store, now)
            self._log_sync(result)
            _meta_write(self.store, {"last_sync_at": now.isoformat()}, now)
        except KeyboardInterrupt:
            self._stop_at_once()
        except CampaignctlError as exc:
            self.log.emit("error", f"sync: {exc.message}", hint=exc.hint)
            self._needs_a_person(exc)
        except Exception as exc:
            self.log.emit("error", f"internal error in sync: {type(exc).__name__}: {exc}")
        self.on_change()
        self._stop_if_a_person_must_act()

    def _hooks(self) -> None:
        """Queue the hooks' share of new events and POST what is due, for at most a few
        seconds (the jobs share one thread); a failing hook is logged once until it works."""
        from campaignctl import hooks

        if self.stop_requested:
            return
        try:
            # the jobs share one thread: at most a tick's time
            budget = min(hooks.BUDGET, self.cfg.daemon.tick.total_seconds())
            posted = hooks.post_due(
                self.store, self.cfg, self.environ, self.clock, rng=self.rng, budget=budget
            )
            if posted is None:
                return
            for where, why in posted.missing_keys:
                if where not in self._hooks_failing:  # once: its events wait in the queue
                    self._hooks_failing.add(where)
                    self.log.emit("error", f"hooks: {where}: {why}; its events wait")
            done = posted.done
            for error in done.errors or ():
                url = error.split(": ", 1)[0]
                if url not in self._hooks_failing:
                    self._hooks_failing.add(url)
                    self.log.emit("error", f"hooks: {error} (retried with backoff)")
            if done.delivered:
                if not done.failed and self._hooks_failing:
                    self.log.emit("hooks", "posting again")
                    self._hooks_failing.clear()
                self.log.emit("hooks", f"delivered={done.delivered} failed={done.failed}")
        except KeyboardInterrupt:
            self._stop_at_once()
        except CampaignctlError as exc:
            self.log.emit("error", f"hooks: {exc.message}", hint=exc.hint)
        except Exception as exc:
            self.log.emit("error", f"internal error in hooks: {type(exc).__name__}: {exc}")

    def _work_channels(self) -> set[str]:
        """The channels the active campaigns' steps use (every channel when none does)."""
        used = {
            step.channel
            for camp in self.cfg.campaigns.values()
            if camp.status == "active"
            for step in camp.steps
            if step.channel in self.cfg.channels
        }
        return used or set(self.cfg.channels)

    def _channel_needs_a_person(self, channel: str, err: CampaignctlError) -> None:
        """One channel's credentials are missing or refused: stop it alone, say so once per
        sync interval, and stop the daemon (exit 78) only when no channel with work is left."""
        if err.exit_code is not ExitCode.CONFIG:
            return
        self.last_errors[channel] = err.message
        if channel not in self._reported:
            self._reported.add(channel)
            self.log.emit(
                "error", f"{channel}: needs a person: {err.message}", channel=channel, hint=err.hint
            )
        if channel not in self.needs_person:
            note_needs_person(self.store, channel, err)
        self.needs_person[channel] = err
        if self._work_channels() <= set(self.needs_person):
            self._needs_a_person(err)

    def _channel_works(self, channel: str) -> None:
        if self.needs_person.pop(channel, None) is not None:
            note_needs_person(self.store, channel, None)
            self.log.emit("daemon", f"{channel}: works again", channel=channel)

    def _needs_a_person(self, err: CampaignctlError) -> None:
        if err.exit_code is ExitCode.CONFIG and self.exit_code is ExitCode.OK:
            self.exit_code = ExitCode.CONFIG
            self.stop_requested = True  # the pass in progress ends after the message in flight
            self.log.emit(
                "daemon",
                f"stopping with exit 78, a person must act: {err.message}",
                hint=err.hint,
            )

    def _stop_if_a_person_must_act(self) -> None:
        if self.exit_code:
            self.request_stop()  # as a SIGTERM would: the job ends first, then the scheduler

    def _stop_at_once(self) -> None:
        self.interrupted = self.stop_requested = True
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)  # in the job, on the main thread: no lock held

    def _on_pass(self, res: PassResult) -> None:
        for ch, err in res.auth_errors.items():
            self._channel_needs_a_person(ch, err)
        self.on_change()

    def _on_event(self, ev: dict[str, Any]) -> None:
        """Log what happened to one message, as its batch commits."""
        kind = ev["event"]
        if kind == "reconciled":
            self.log.emit("reconcile", f"message={ev['id']} {ev['outcome']}", message_id=ev["id"])
            return
        where = f"{ev.get('campaign', '')}/{ev.get('step', '')} {ev.get('channel', '')}"
        text = f"{where} lead={ev.get('lead', '')} message={ev['id']} {kind}"
        fields: dict[str, Any] = {
            "campaign": ev.get("campaign"),
            "step": ev.get("step"),
            "channel": ev.get("channel"),
            "lead": ev.get("lead"),
            "message_id": ev["id"],
            "outcome": kind,
        }
        if kind == "sent":
            self._channel_works(str(ev.get("channel", "")))
        if kind in ERROR_EVENTS:
            error = str(ev.get("error", ""))
            text += f": {error}"
            fields["error"] = error
            self.last_errors[str(ev.get("channel", ""))] = error
        self.log.emit("send", text, **fields)

    def _log_sync(self, result: SyncResult) -> None:
        for c in result.channels:
            if not c.reads:
                continue
            if c.error is not None:
                if c.error.exit_code is ExitCode.CONFIG:
                    self._channel_needs_a_person(c.channel, c.error)
                    continue
                self.last_errors[c.channel] = c.error.message
                self.log.emit("sync", f"{c.channel} error: {c.error.message}", channel=c.channel)
                continue
            self._channel_works(c.channel)
            if c.new:
                kinds = " ".join(f"{k}={n}" for k, n in sorted(c.events.items()))
                self.log.emit(
                    "sync",
                    f"{c.channel} {kinds} stopped={c.stopped} skipped={c.skipped}",
                    channel=c.channel,
                    events=dict(c.events),
                    stopped=c.stopped,
                    skipped=c.skipped,
                )

    # -------------------------------------------------------------- the campaign file

    def _file_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.cfg.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def reload_if_changed(self) -> bool:
        """Re-read the campaign file when it changed; True when a new config is in use.

        An invalid file is logged with its first problem (file:line: key path: message) and
        the previous config kept; the same bad file is reported once, not on every tick.
        """
        from campaignctl.config import read_text, validate_text

        # The hash, not the mtime: an edit within the file system's mtime granularity that
        # keeps the size (paused -> active) must not go unnoticed. The file is small.
        digest = self._file_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        path = self.cfg.path
        try:
            cfg, problems = validate_text(read_text(path), path)
        except CampaignctlError as exc:
            cfg, problems = None, []
            self.log.emit("config", f"{exc.message}; keeping the previous campaign file")
            return False
        errors = [p for p in problems if p.severity == "error"]
        if errors or cfg is None:
            first = str(errors[0]) if errors else f"{path}: invalid"
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            self.log.emit(
                "config",
                f"invalid: {first}{more}; keeping the previous campaign file",
                problem=first,
                hint="run `campaignctl check` to list every problem",
            )
            return False
        if cfg.database_url() != self.cfg.database_url():
            self.log.emit(
                "config",
                "settings.database changed: restart the daemon to use the new database; "
                "keeping the previous campaign file",
            )
            return False
        old_daemon = self.cfg.daemon
        if self._runner is not None:
            try:
                self._runner.use(cfg)
            except CampaignctlError as exc:  # a [server] added whose key this process lacks
                self.log.emit(
                    "config",
                    f"{exc.message}; keeping the previous campaign file",
                    problem=exc.message,
                    hint=exc.hint,
                )
                return False
        self.cfg = cfg
        if cfg.daemon != old_daemon and self._scheduler is not None:
            for job, every in (("tick", cfg.daemon.tick), ("sync", cfg.daemon.sync_interval)):
                self._scheduler.reschedule_job(
                    job, trigger="interval", seconds=every.total_seconds()
                )
        self.log.emit("config", f"reloaded {path}")
        return True


def _dur(td: timedelta) -> str:
    from campaignctl.timespec import format_duration

    return format_duration(td)
