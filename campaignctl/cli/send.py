"""`send`, `plan` and `status`: run the engine, forecast it, and report what it did."""

import signal
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from campaignctl.cli.context import (
    TableOrJson,
    check_names,
    post_hooks,
    print_json,
    report_error,
    state,
    stderr,
    stdout,
)
from campaignctl.errors import ExitCode

if TYPE_CHECKING:
    from campaignctl.channels.base import Outgoing
    from campaignctl.config import Config
    from campaignctl.engine import PassResult
    from campaignctl.planner import Plan
    from campaignctl.runner import RunResult
    from campaignctl.store import Store


#: Messages a dry run lists unless `--show` says otherwise: a screenful.
DRY_SHOWN = 20


def _now() -> datetime:
    from campaignctl.clock import wall_clock

    return wall_clock()


# ---------------------------------------------------------------- send


def send(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would go now; write nothing, send nothing."
    ),
    show: str | None = typer.Option(
        None,
        "--show",
        metavar="N|all",
        help=f"With --dry-run: list N messages that would go, or all [default: {DRY_SHOWN}].",
    ),
    campaign: list[str] = typer.Option(
        [], "--campaign", metavar="NAME", help="Only this campaign (repeatable)."
    ),
    channel: list[str] = typer.Option(
        [], "--channel", metavar="CH", help="Only this channel (repeatable)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, metavar="N", help="Send at most N messages in this run."
    ),
    max_time: str | None = typer.Option(
        None, "--max-time", metavar="DURATION", help="Stop after this long, e.g. 10m."
    ),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="For cron: print nothing when all went well or another run holds the lock (exit "
        "75); errors and, when the run did not succeed, the summary line go to stderr.",
    ),
    no_lock: bool = typer.Option(
        False,
        "--no-lock",
        help="Run beside another send on the same database (several workers); the database "
        "claims still send each message at most once and hold the limits together.",
    ),
    test_to: str | None = typer.Option(
        None,
        "--test-to",
        metavar="EMAIL_OR_PHONE",
        help="Send ONE test message of a step of --campaign to this address instead (marked "
        "[TEST]; counts against the channel's limits, changes no lead's progress; works on "
        "draft and paused campaigns).",
    ),
    step: str | None = typer.Option(
        None, "--step", metavar="STEP", help="With --test-to: the step (default: the first)."
    ),
    lead: str | None = typer.Option(
        None,
        "--lead",
        metavar="EMAIL_OR_PHONE",
        help="With --test-to: render for this lead of the database (default: the first lead "
        "in the audience, or a built-in sample lead).",
    ),
) -> None:
    """Send what is due now, within every limit and window; exit when nothing more is due.

    Then post the outgoing hooks' due events, for at most 5 seconds."""
    from campaignctl.errors import UsageError
    from campaignctl.timespec import parse_duration

    st = state(ctx)
    shown = _shown(show, dry_run)
    if test_to is not None:
        refused = [o for o, v in (("--limit", limit), ("--max-time", max_time)) if v is not None]
        refused += ["--channel"] if channel else []
        if refused:
            raise UsageError(f"--test-to: {', '.join(refused)} cannot be used with it")
        if len(campaign) != 1:
            raise UsageError(
                "--test-to needs one --campaign",
                "campaignctl send --test-to ADDRESS --campaign NAME [--step STEP]",
            )
        _test_send(st, campaign[0], step, test_to, lead, dry_run=dry_run, lock=not no_lock)
        return
    if step is not None or lead is not None:
        raise UsageError(
            f"{'--step' if step is not None else '--lead'} is for a test send: "
            "add --test-to ADDRESS"
        )
    check_names(st.config(), campaign, channel)
    cfg, store = st.config(), st.store(read_only=dry_run)
    try:
        budget = parse_duration(max_time) if max_time else None
    except ValueError as exc:
        raise UsageError(f"--max-time: {exc}") from None
    campaigns = campaign or None
    channels = channel or None
    if dry_run:
        _dry_run(cfg, store, campaigns, channels, limit, quiet, shown)
        return
    from campaignctl.runner import Runner, RunOptions

    stops = _Stops()
    view = _Progress(quiet)
    options = RunOptions(
        stop_when_idle=True,
        limit=limit,
        max_time=budget,
        should_stop=stops,
        on_pass=view.update,
        on_event=view.event,
    )
    from campaignctl.errors import LockHeldError

    try:
        with stops.installed(), view:
            runner = Runner(cfg, store, campaigns=campaigns, channels=channels, lock=not no_lock)
            with runner:
                result = runner.run(options)
    except LockHeldError:
        if not quiet:
            raise
        # cron overlapping a long run is the normal case, not news: exit 75 without a word, so
        # cron mails nothing and a wrapper can still tell (docs/operations.md)
        raise typer.Exit(int(ExitCode.TEMPFAIL)) from None
    _note_credentials(store, result)
    if not stops():  # what this run recorded, posted now: cron needs no daemon for the hooks
        post_hooks(cfg, store, say=not quiet)
    _finish(result, quiet, view.transient)


def _note_credentials(store: "Store", result: "RunResult") -> None:
    """Keep for `status` each channel whose credentials this run found missing or refused (it
    needs a person: `campaignctl auth ...`), and forget it for each channel this run sent on,
    as the daemon does: a run from cron is seen in `status` too."""
    from campaignctl.daemon import needs_person, note_needs_person

    refused = result.total.auth_errors
    worked = {ch for (_c, _s, ch), c in result.total.counts.items() if c["sent"]} - set(refused)
    known = needs_person(store)
    for ch, err in refused.items():
        if known.get(ch) != {"message": err.message, "hint": err.hint}:
            note_needs_person(store, ch, err)
    for ch in worked & set(known):
        note_needs_person(store, ch, None)


def _test_send(
    st: Any,
    campaign: str,
    step: str | None,
    to: str,
    lead: str | None,
    *,
    dry_run: bool,
    lock: bool,
) -> None:
    """`send --test-to`: one line saying what went where (or the message, with --dry-run)."""
    from campaignctl.testsend import prepare, send_test

    cfg, now = st.config(), _now()
    # rendered (and every name and address checked) before a database is created
    msg, out = prepare(cfg, st.store(read_only=True), campaign, step, to, lead, now)
    if dry_run:
        print(
            f"test {msg.kind} for {msg.to} via {msg.channel}: {campaign}/{msg.step}, "
            f"rendered for {msg.lead} (dry run: nothing sent)"
        )
        if msg.subject is not None:
            print(f"Subject: {msg.subject}")
        print(f"\n{msg.text}", flush=True)
        return
    msg = send_test(cfg, st.store(), msg, out, now, lock=lock)
    print(
        f"test {msg.kind} sent to {msg.to} via {msg.channel}: {campaign}/{msg.step}, rendered "
        f"for {msg.lead}; provider id {msg.provider_id}",
        flush=True,
    )


class _Stops:
    """First SIGINT/SIGTERM: finish the send in flight, then stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "campaignctl: stopping after the message in flight (again to stop at once)",
            file=sys.stderr,
        )

    def installed(self) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def scope() -> Any:
            old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                for s in old:
                    signal.signal(s, self._handle)
            except ValueError:  # not the main thread (in-process tests): no handlers
                old = {}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

        return scope()


#: Counts that describe the latest pass (what waits), not sums over the run.
_WAITING = ("deferred_limit", "deferred_breaker")
#: The table's header for a counter (`engine.COUNTERS`), where its name is not already one.
_HEADER = {
    "deferred_limit": "deferred (limit)",
    "deferred_window": "deferred (window)",
    "deferred_breaker": "deferred (breaker)",
    "deferred_ab_wait": "held for A/B winner",
    "deferred_frequency_cap": "deferred (frequency cap)",
    "retry": "retrying",
}


def _counters() -> tuple[str, ...]:
    # the engine's own list; imported when a send runs, never for `--help`
    from campaignctl.engine import COUNTERS

    return COUNTERS


class _Progress:
    """A Rich live table on a terminal; plain greppable lines otherwise; nothing when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.console = stdout()
        self.live: Any = None
        self.rows: dict[tuple[str, str, str], dict[str, int]] = {}
        #: the latest temporary error per channel, with its hint: named if nothing went out
        self.transient: dict[str, tuple[str, str | None]] = {}

    def __enter__(self) -> "_Progress":
        if not self.quiet and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, auto_refresh=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._table(), refresh=True)
            self.live.__exit__(*exc)

    def update(self, res: "PassResult") -> None:
        columns = _counters()
        for key, c in res.counts.items():
            row = self.rows.setdefault(key, dict.fromkeys(columns, 0))
            for k in columns:
                # waiting counts describe the latest pass; the others add up
                row[k] = c[k] if k in _WAITING else row[k] + c[k]
        for key, row in self.rows.items():
            if key not in res.counts:
                for k in _WAITING:
                    row[k] = 0
        if self.live is not None:
            self.live.update(self._table(), refresh=True)

    def event(self, ev: dict[str, Any]) -> None:
        """What happened to one message, as its batch commits: a failure always (stderr), the
        rest as greppable lines when there is no live table."""
        kind = ev["event"]
        if kind == "transient":
            self.transient[ev.get("channel", "")] = (ev.get("error", ""), ev.get("hint"))
        if kind in _FAILURES:
            _report_failure(ev)
        elif self.live is None and not self.quiet:
            where = f"{ev.get('campaign', '')}/{ev.get('step', '')}"
            line = f"{kind} {where} via {ev.get('channel', '')} to {ev.get('to', '')}"
            if kind == "reconciled":
                line = f"reconciled message {ev['id']}: {ev['outcome']}"
            print(f"{line} (message {ev['id']})", flush=True)

    def _table(self) -> Any:
        from rich.table import Table

        t = Table(title="campaignctl send")
        columns = _counters()
        for h in ("campaign", "step", "channel"):
            t.add_column(h)
        for k in columns:
            t.add_column(_HEADER.get(k, k), justify="right")
        for (camp, step, ch), row in sorted(self.rows.items()):
            t.add_row(camp, step, ch, *(str(row[k]) for k in columns))
        return t


#: The events `send` reports on stderr, whatever --quiet says.
_FAILURES = ("failed", "permanent", "opted_out", "auth", "uncertain")


def _report_failure(ev: dict[str, Any]) -> None:
    kind = ev["event"]
    report_error(
        f"{ev.get('campaign', '')}/{ev.get('step', '')} via {ev.get('channel', '')} "
        f"to {ev.get('to', '')} (message {ev['id']}): {kind}: {ev.get('error', '')}",
        ev.get("hint"),
    )


def _summary(res: "PassResult", last: "PassResult", next_due: datetime | None) -> str:
    parts = [
        f"sent {res.total('sent')}",
        f"failed {res.total('failed')}",
        f"skipped {res.total('skipped')}",
        f"retrying {res.total('retry')}",
        # the last pass counts every message still uncertain: those its reconcile could not
        # settle (from earlier passes and runs) and those it made uncertain itself
        f"uncertain {last.total('uncertain')}",
        f"deferred {last.total('deferred_limit')} by limit, "
        f"{res.total('deferred_window')} by window"
        + (
            f", {last.total('deferred_breaker')} by breaker"
            if last.total("deferred_breaker")
            else ""
        )
        + (
            f", {res.total('deferred_frequency_cap')} by frequency cap"
            if res.total("deferred_frequency_cap")
            else ""
        )
        + (
            f", {res.total('deferred_ab_wait')} held for the A/B winner"
            if res.total("deferred_ab_wait")
            else ""
        ),
    ]
    line = "summary: " + ", ".join(parts)
    if next_due is not None:
        line += f"; next due {next_due.strftime('%Y-%m-%d %H:%M:%S UTC')}"
    return line


def _finish(
    result: "RunResult", quiet: bool, transient: dict[str, tuple[str, str | None]] | None = None
) -> None:
    """The summary line, then the exit code. Quiet (cron) prints nothing when all went well,
    so cron mails only when there is something to read: the summary then goes to stderr."""
    summary = _summary(result.total, result.last, result.next_due)
    code = _exit_code(result)
    # Quiet (cron) warns about a standing condition only when it changes: an audience whose
    # skipped count or reason differs from the last enrolment's, a breaker that tripped in
    # this run. `status` shows the condition meanwhile, and a run that only found a breaker
    # still paused (exit 75) says nothing at all.
    standing_pause = (
        code is ExitCode.TEMPFAIL
        and not result.total.transient_errors
        and not (result.total.tripped & set(result.last.paused))
    )
    if not quiet:
        print(summary, flush=True)
    elif code is not ExitCode.OK and not standing_pause:
        print(summary, file=sys.stderr, flush=True)
    for ch, b in sorted(result.last.paused.items()):
        if quiet and ch not in result.total.tripped:
            continue
        failed, attempts, last = b.failures()
        until = f"{b.until:%H:%M} UTC" if b.until else "later"
        print(
            f"campaignctl: warning: {ch}: paused by circuit breaker until {until}, {failed} of "
            f"last {attempts} attempts failed: {last}",
            file=sys.stderr,
        )
    for name, (n, reason) in sorted(result.total.audience_skipped.items()):
        if quiet and name not in result.total.audience_changed:
            continue
        print(f"campaignctl: warning: {name}: {n} lead(s) skipped: {reason}", file=sys.stderr)
    if result.total.auth_errors:
        for err in result.total.auth_errors.values():
            report_error(err.message, err.hint)
    elif code is ExitCode.TEMPFAIL:
        # name each channel and what it said (`channel email: cannot write outbox/1.eml: ...`)
        for message, hint in (transient or {}).values():
            report_error(
                f"{message}: a temporary provider error, the messages will be retried", hint
            )
        if not transient and not result.last.paused:
            report_error(
                "every attempt met a temporary provider error; the messages will be retried"
            )
    if code:
        raise typer.Exit(int(code))


def _exit_code(result: "RunResult") -> ExitCode:
    """78 (a person must act) before 1 (some failed) before 75 (nothing went: try later)."""
    if result.total.auth_errors:
        return max(e.exit_code for e in result.total.auth_errors.values())
    if result.total.total("failed"):
        return ExitCode.FAILED
    if result.total.transient_errors and not result.total.total("sent"):
        return ExitCode.TEMPFAIL
    if result.last.paused and not result.total.total("sent"):
        # a channel with due messages paused by its breaker: the provider is failing
        return ExitCode.TEMPFAIL
    return ExitCode.OK


def _shown(show: str | None, dry_run: bool) -> int | None:
    """`--show` as the number of messages a dry run lists (None: all)."""
    from campaignctl.errors import UsageError

    if show is None:
        return DRY_SHOWN
    if not dry_run:
        raise UsageError("--show lists the messages of a dry run: add --dry-run")
    if show == "all":
        return None
    if not show.isdigit():
        raise UsageError(f"--show {show!r}: give a number of messages, or all")
    return int(show)


def _dry_run(
    cfg: "Config",
    store: "Store",
    campaigns: list[str] | None,
    channels: list[str] | None,
    limit: int | None,
    quiet: bool,
    shown: int | None,
) -> None:
    """The messages that would go, as the pass reaches them (the first `shown`, all for None),
    each failure on stderr, then the summary line. Nothing is held but the table's first rows."""
    from campaignctl.cli.streamed import StreamedTable
    from campaignctl.runner import dry_run

    table = StreamedTable(
        stdout(),
        ("campaign", "step", "channel", "to", "subject / text"),
        fold=("to",),
        title="would send now (dry run: nothing written)",
    )

    def listed(m: "Outgoing") -> None:
        if not quiet and (shown is None or table.count < shown):
            preview = m.subject or m.text.splitlines()[0] if m.text else (m.subject or "")
            table.add((m.campaign, m.step, m.channel, m.to, preview[:60]))

    def failed(ev: dict[str, Any]) -> None:
        if ev["event"] in _FAILURES:
            _report_failure(ev)

    dry = dry_run(
        cfg,
        store,
        _now(),
        campaigns=campaigns,
        channels=channels,
        limit=limit,
        keep=0,
        on_message=listed,
        on_event=failed,
    )
    res = dry.result
    if table.count:
        more = dry.count - table.count
        table.close(caption=f"and {more:,} more: --show all lists them" if more else None)
    print(
        f"dry run: would send {dry.count}, fail {res.total('failed')}, "
        f"skip {res.total('skipped')}; deferred {res.total('deferred_limit')} by limit, "
        f"{res.total('deferred_window')} by window",
        flush=True,
    )
    if res.total("failed"):
        raise typer.Exit(int(ExitCode.FAILED))


# ---------------------------------------------------------------- plan


def plan(
    ctx: typer.Context,
    campaign: list[str] = typer.Option(
        [], "--campaign", metavar="NAME", help="Only this campaign (repeatable)."
    ),
    days: int = typer.Option(
        30,
        "--days",
        min=1,
        max=400,
        metavar="N",
        help="Days to show. The forecast itself always runs to the end (at most 400 days), "
        "so finish dates do not depend on N.",
    ),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table or json."),
) -> None:
    """Forecast sends per day per channel, each channel's headroom under its daily limit, the
    messages that will be skipped and why, and when each campaign finishes."""
    from campaignctl.planner import plan as make_plan

    st = state(ctx)
    p = make_plan(
        st.config(), st.store(read_only=True), _now(), days=days, campaigns=campaign or None
    )
    idle = not_sending(st.config(), campaign or None)
    if fmt is TableOrJson.json:
        print_json({**plan_json(p), "not_sending": idle})
        return
    _render_plan(p)
    for c in idle:
        print(f"{c['name']}: {c['status']}, sends nothing; {c['hint']}", flush=True)


#: What starts a campaign that `plan` (and `send`) pass over, by its status.
_STARTS = {
    "draft": "start it with campaignctl campaign start {}",
    "paused": "resume it with campaignctl campaign resume {}",
}


def not_sending(cfg: "Config", only: list[str] | None = None) -> list[dict[str, str]]:
    """Draft and paused campaigns (of `only`, when given), each with the command that starts it:
    why `plan` shows nothing for them."""
    return [
        {"name": name, "status": camp.status, "hint": _STARTS[camp.status].format(name)}
        for name, camp in cfg.campaigns.items()
        if camp.status in _STARTS and (only is None or name in only)
    ]


def plan_json(p: "Plan") -> dict[str, Any]:
    """The `plan --format json` document; times in settings.timezone. `horizon` is the last
    day simulated and whether messages were still to send then (finishes after it estimated)."""
    from zoneinfo import ZoneInfo

    last = p.last_simulated_day()

    return {
        "start": p.start.isoformat(),
        "timezone": p.timezone,
        "days": [
            {"date": d.isoformat(), "day": p.day_number(d), "channels": counts}
            for d, counts in p.per_day.items()
        ],
        "campaigns": [
            {
                "name": c.name,
                "sends": c.sends,
                "remaining": c.remaining,
                "finish": c.finish.astimezone(ZoneInfo(p.timezone)).isoformat()
                if c.finish
                else None,
                "finish_day": c.finish_day,
                "estimated": c.estimated,
                "waits": c.waits,
            }
            for c in p.campaigns.values()
        ],
        "headroom": [
            {
                "date": d.isoformat(),
                "day": p.day_number(d),
                "channels": {
                    ch: {"limit": h.limit, "planned": h.planned, "spare": h.spare}
                    for ch, h in room.items()
                },
            }
            for d, room in p.headroom().items()
        ],
        "skipped": [
            {"campaign": c.name, "step": step, "code": code, "reason": reason, "count": n}
            for c in p.campaigns.values()
            for (step, code, reason), n in c.skipped.items()
        ],
        "horizon": {"date": last.isoformat(), "day": p.day_number(last), "hit": p.horizon_hit},
    }


def _render_plan(p: "Plan") -> None:
    from zoneinfo import ZoneInfo

    from rich.table import Table

    con = stdout()
    t = Table(title=f"sends per day ({p.timezone})")
    t.add_column("date")
    t.add_column("day", justify="right")
    for ch in p.channels:
        t.add_column(ch, justify="right")
    for d, counts in p.per_day.items():
        t.add_row(
            d.isoformat(), str(p.day_number(d)), *(str(counts.get(ch, 0)) for ch in p.channels)
        )
    con.print(t)
    c = Table(title="campaigns")
    for h in ("campaign", "sends", "finish", "waited for limit", "for window", "for delay"):
        c.add_column(h, justify="left" if h in ("campaign", "finish") else "right")
    for cp in p.campaigns.values():
        if cp.finish is not None and cp.finish_day is not None:
            local = cp.finish.astimezone(ZoneInfo(p.timezone))
            approx = "~" if cp.estimated else ""
            when = f"{approx}{local.strftime('%Y-%m-%d')} (day {cp.finish_day})"
        elif cp.remaining:
            when = f"unknown ({cp.remaining} left, nothing moving on their channel)"
        else:
            when = "nothing to send"
        c.add_row(
            cp.name,
            str(cp.sends),
            when,
            str(cp.waits["limit"]),
            str(cp.waits["window"]),
            str(cp.waits["delay"]),
        )
    con.print(c)
    room = Table(title="daily headroom (limit / planned / spare)")
    room.add_column("date")
    for ch in p.channels:
        room.add_column(ch, justify="right")
    for d, per_channel in p.headroom().items():
        room.add_row(
            d.isoformat(),
            *(
                f"{h.planned:,} (no limit)"
                if h.limit is None
                else f"{h.limit:,} / {h.planned:,} / {h.spare:,}"
                for h in per_channel.values()
            ),
        )
    con.print(room)
    skips = [
        (cp.name, step, reason, n)
        for cp in p.campaigns.values()
        for (step, _code, reason), n in cp.skipped.items()
    ]
    if skips:
        sk = Table(title="messages that will be skipped")
        for h in ("campaign", "step", "reason", "messages"):
            sk.add_column(h, justify="right" if h == "messages" else "left")
        for name, step, reason, n in skips:
            sk.add_row(name, step, reason, f"{n:,}")
        con.print(sk)
    if p.horizon_hit:
        end = p.last_simulated_day()
        con.print(
            f"the forecast stops at its horizon, {end.isoformat()} (day {p.day_number(end)}), "
            "with messages still to send: finishes after it are estimated (~)",
            markup=False,
            highlight=False,
        )


# ---------------------------------------------------------------- status

_STEP_COUNTS = (
    ("pending", "pending"),
    ("sending", "sending"),
    ("sent", "sent"),
    ("failed", "failed"),
    ("skipped", "skipped"),
    ("uncertain", "uncertain"),
    ("opted_out", "opted out"),
    ("delivered", "delivered"),
    ("read", "read"),
    ("undelivered", "undelivered"),
)


def status(
    ctx: typer.Context,
    campaign: str | None = typer.Argument(None, help="Only this campaign."),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table or json."),
    forecast: bool = typer.Option(
        False,
        "--forecast",
        help="Forecast each campaign's finish however many messages that simulates (by "
        "default, past 200,000 pending messages and leads to enrol, `plan` does it).",
    ),
) -> None:
    """Per campaign and step: enrolled, pending, sent, failed, skipped (and why), uncertain,
    opted out, and delivered, read, undelivered (from the delivery statuses `sync` recorded);
    per variant: sent, replies, delivered and rate, with the A/B winner once decided; and
    each campaign's forecast finish."""
    from campaignctl.status import FORECAST_LIMIT, reason_label
    from campaignctl.status import status as compute

    st = state(ctx)
    limit = None if forecast else FORECAST_LIMIT
    doc = compute(st.config(), st.store(read_only=True), _now(), campaign, forecast_limit=limit)
    if fmt is TableOrJson.json:
        print_json(doc)
        return
    from rich.table import Table

    con = stdout()
    for camp in doc["campaigns"]:
        approx = "~" if camp["finish_estimated"] else ""
        if not camp["forecast"]:
            finish = (
                f"finish not forecast ({doc['forecast']['messages']:,} messages to simulate: "
                "`campaignctl plan` or `status --forecast`)"
            )
        elif camp["finish"]:
            finish = f"finishes {approx}{camp['finish'][:10]} (day {camp['finish_day']})"
        else:
            finish = "nothing left to send" if not camp["remaining"] else "finish unknown"
        t = Table(
            title=f"{camp['name']} ({camp['kind']}, {camp['status']}): "
            f"{camp['enrolled']} enrolled, {camp['active']} active; {finish}"
        )
        for h in ("step", "channel", *(header for _, header in _STEP_COUNTS), "skip reasons"):
            t.add_column(h, justify="left" if h in ("step", "channel", "skip reasons") else "right")
        for s in camp["steps"]:
            why = sorted(s["skipped_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
            t.add_row(
                s["name"],
                s["channel"],
                *(str(s[k]) for k, _ in _STEP_COUNTS),
                ", ".join(f"{reason_label(code)} {n}" for code, n in why),
            )
        con.print(t)
        for s in camp["steps"]:
            if s["variants"]:
                con.print(_variants_table(camp["name"], s))
            for line in _ab_lines(camp["name"], s):
                con.print(line, markup=False, highlight=False)
        skipped = camp["audience_skipped"]
        if skipped["count"]:
            con.print(
                f"{camp['name']}: {skipped['count']} lead(s) skipped: {skipped['reason']}",
                markup=False,
                highlight=False,
            )
    con.print(_daemon_line(doc["daemon"]), markup=False, highlight=False)
    for hook in doc.get("hooks", ()):
        line = f"hook {hook['url']}: {hook['pending']} waiting"
        if hook["pending"]:
            line += f" since {hook['oldest'][:19]}Z"
        if hook["last_error"]:
            line += f"; last error: {hook['last_error']} ({hook['attempts']} attempt(s))"
        con.print(line, markup=False, highlight=False)
    for ch in doc["channels"]:
        if not ch["reads_replies"]:
            con.print(f"{ch['name']} ({ch['provider']}): {ch['note']}", markup=False)
        if ch["needs_person"]:
            person = ch["needs_person"]
            hint = f" ({person['hint']})" if person["hint"] else ""
            con.print(
                f"{ch['name']}: needs a person: {person['message']}{hint}",
                markup=False,
                highlight=False,
            )
        w = ch.get("warmup")
        if w and w["day"] <= w["days"]:
            started = "" if w["first_send"] else " (starts with its first send)"
            con.print(
                f"{ch['name']}: warm-up day {w['day']} of {w['days']}{started}: "
                f"{w['limit']:,} today, ramping to {w['daily_limit']:,}",
                markup=False,
                highlight=False,
            )
        b = ch["breaker"]
        if b["paused"]:
            what = "a probe message in flight" if b["probing"] else "paused by circuit breaker"
            con.print(
                f"{ch['name']}: {what} until {b['until'][11:16]}, {b['failed']} of last "
                f"{b['attempts']} attempts failed: {b['last_error']}"
                + (
                    f"; {b['deferred']} due message(s) deferred by breaker" if b["deferred"] else ""
                ),
                markup=False,
                highlight=False,
            )
    uncertain = sum(s["uncertain"] for c in doc["campaigns"] for s in c["steps"])
    if uncertain:
        stderr().print(
            f"{uncertain} message(s) uncertain: their channel cannot tell whether they went out; "
            "they will not be resent"
        )


def _variants_table(campaign: str, step: dict[str, Any]) -> Any:
    """A step's variants: sent, replies, delivered and the rate its A/B test compares."""
    from rich.table import Table

    metric = step["ab"]["metric"] if step["ab"] else "reply_rate"
    t = Table(title=f"{campaign}/{step['name']}: variants")
    for h in ("variant", "sent", "replies", "delivered", metric.replace("_", " ")):
        t.add_column(h, justify="left" if h == "variant" else "right")
    for v in step["variants"]:
        name = v["name"] + (f" ({v['status']})" if v["status"] != "active" else "")
        rate = "-" if v["rate"] is None else f"{v['rate']:.1%}"
        t.add_row(name, str(v["sent"]), str(v["replies"]), str(v["delivered"]), rate)
    return t


def _ab_lines(campaign: str, step: dict[str, Any]) -> list[str]:
    """`promo/offer: A/B winner B (p-value 0.0124, significant: ...)`, or where the test is."""
    ab = step["ab"]
    if ab is None:
        return []
    where = f"{campaign}/{step['name']}"
    d = ab["decision"]
    if d is not None:
        p = "" if d["p_value"] is None else f"p-value {d['p_value']:.4g}, "
        return [
            f"{where}: A/B winner {d['winner']} by {ab['metric']} "
            f"({p}rule {d['rule']}: {d['reason']}), decided {d['decided_at'][:16]}Z"
        ]
    if ab["started_at"] is None:
        return [f"{where}: A/B test not started ({ab['test_fraction']:.0%} of leads in the test)"]
    return [f"{where}: A/B test running, winner by {ab['metric']} at {ab['decide_at'][:16]}Z"]


def _daemon_line(d: dict[str, Any]) -> str:
    """`daemon: running (pid 812) since ...; last pass ...` or `daemon: not running`."""
    last = f"; last pass {d['last_pass_at'][:19]}Z" if d["last_pass_at"] else ""
    if d["running"]:
        return f"daemon: running (pid {d['pid']}) since {d['started_at'][:19]}Z{last}"
    stopped = f" (stopped {d['stopped_at'][:19]}Z)" if d["stopped_at"] else ""
    return f"daemon: not running{stopped}{last}"


def register(app: typer.Typer) -> None:
    app.command()(send)
    app.command()(plan)
    app.command()(status)
