"""`campaignctl report`: how each campaign did, per step and variant, and per day.

`build` reads a few grouped rows from the store (`store.report`: everything is counted in SQL)
and returns the report as plain data (the `--format json` document); `html.render` and the CLI's
table and csv writers only present it. The same data gives the same document, byte for byte:
nothing in it comes from the clock.

Rates always name their denominator and are None (shown as "-") when it is 0.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from campaignctl.config import Campaign, Config
    from campaignctl.store import Store

#: The counts of a step or variant row, in the order tables show them.
COUNTS = (
    "messages",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "replied",
    "opted_out",
    "bounced",
    "clicked",
)
#: rate name -> (numerator, denominator) for a step or a variant.
STEP_RATES = {
    "delivery_rate": ("delivered", "sent"),
    "undelivered_rate": ("undelivered", "sent"),
    "failure_rate": ("failed", "attempted"),
    "reply_rate": ("replied", "sent"),
    "optout_rate": ("opted_out", "sent"),
    "bounce_rate": ("bounced", "sent"),
    "click_rate": ("clicked", "sent"),
}
#: The rate shown under each count.
RATE_OF = {count: name for name, (count, _of) in STEP_RATES.items()}
LABELS = {
    "messages": "messages",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "replied": "replied",
    "opted_out": "opted out",
    "bounced": "bounced",
    "clicked": "clicked",
    "attempted": "attempted (sent + failed)",
}


def rate(numerator: int, denominator: int, of: str) -> dict[str, Any]:
    """{value, of}: numerator / denominator, or None when there is nothing to divide by."""
    return {"value": round(numerator / denominator, 4) if denominator else None, "of": of}


def build(
    cfg: Config,
    store: Store,
    campaign: str | None = None,
    since: datetime | None = None,
) -> dict[str, Any]:
    """The report as data: {"timezone", "since", "campaigns": [...]}; each campaign has its
    totals (enrolled, messages, sent, delivered, ... summed over its steps), `rates`, `steps`
    (each with its counts, `failed_by_reason`, `rates`, `variants` and the A/B `decision`),
    `days` ([{day, sends: {channel: n}, replies}] in settings.timezone), `clicks_tracked` and
    `no_sends`."""
    from campaignctl.store import abtests
    from campaignctl.store import report as report_queries

    if campaign is not None:
        cfg.campaign(campaign)  # a NotFoundError with "did you mean"
    names = [campaign] if campaign is not None else list(cfg.campaigns)
    tz = ZoneInfo(cfg.settings.timezone)
    track_setting = bool(getattr(getattr(cfg, "server", None), "track_clicks", False))
    out = []
    with store.read() as s:
        decisions = abtests.decisions(s, names)
        outcomes = report_queries.outcome_counts(s, since)
        replies = report_queries.reply_times(s, since)
        for name in names:
            out.append(
                _campaign(s, cfg, name, since, tz, decisions, track_setting, outcomes, replies)
            )
    return {
        "timezone": cfg.settings.timezone,
        "since": since.astimezone(tz).isoformat() if since else None,
        "campaigns": out,
    }


def _campaign(
    s: Any,
    cfg: Config,
    name: str,
    since: datetime | None,
    tz: ZoneInfo,
    decisions: dict[tuple[str, str], Any],
    track_setting: bool,
    outcomes: list[Any],
    replies: list[Any],
) -> dict[str, Any]:
    from campaignctl.store import report as q
    from campaignctl.store.report import OUTCOMES

    counts: dict[tuple[str, str | None], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(COUNTS, 0)
    )
    reasons: dict[tuple[str, str | None], dict[str, int]] = defaultdict(dict)
    channels: dict[str, str] = {}
    segments: list[tuple[str, str | None, str]] = []
    for state, step, variant, channel, n in q.message_counts(s, name, since):
        c = counts[(step, variant)]
        c["messages"] += n
        if state in ("sent", "failed"):
            c[state] += n
        if state == "sent":
            segments.append((step, variant, channel))
        channels.setdefault(step, channel)
    for step, variant, code, n in q.failed_counts(s, name, since):
        reasons[(step, variant)][code or "unknown"] = n
    any_click = 0
    for camp, state, step, variant, *figures in outcomes:
        if camp != name or state != "sent":
            continue
        c = counts[(step, variant)]
        for k, n in zip(OUTCOMES, figures, strict=False):  # the last, any_click, is left
            c[k] += int(n or 0)
        any_click += int(figures[-1] or 0)
    for step, variant, kind, n in q.unmatched_counts(s, name, since):
        counts[(step, variant)]["replied" if kind == "reply" else "opted_out"] += n
    enrolled = q.enrolled_count(s, name, since)
    days = _days(s, name, since, tz, segments, replies)
    camp = cfg.campaigns[name]
    tracked = track_setting or any_click > 0
    steps = _steps(name, camp, counts, reasons, channels, decisions, tracked, tz)
    total = _sum([{k: st[k] for k in COUNTS if k in st} | _zero_click(st) for st in steps])
    row = _row(total, _merge([st["failed_by_reason"] for st in steps]), tracked)
    return {
        "name": name,
        "kind": camp.kind,
        "status": camp.status,
        "description": camp.description,
        "clicks_tracked": tracked,
        "no_sends": total["sent"] == 0,
        "enrolled": enrolled,
        **row,
        "steps": steps,
        "days": days,
    }


def _zero_click(st: dict[str, Any]) -> dict[str, int]:
    return {} if "clicked" in st else {"clicked": 0}


def _steps(
    name: str,
    camp: Campaign,
    counts: dict[tuple[str, str | None], dict[str, int]],
    reasons: dict[tuple[str, str | None], dict[str, int]],
    channels: dict[str, str],
    decisions: dict[tuple[str, str], Any],
    tracked: bool,
    tz: ZoneInfo,
) -> list[dict[str, Any]]:
    """Each step of the file, then any step only the database still has (removed)."""
    in_file = [st.name for st in camp.steps]
    stored = sorted({s for s, _v in counts if s not in in_file})
    file_steps = {st.name: st for st in camp.steps}
    out = []
    for step in [*in_file, *stored]:
        st = file_steps.get(step)
        keys = sorted((k for k in counts if k[0] == step), key=lambda k: k[1] or "")
        variant_names = [v.name for v in st.variants] if st else []
        variant_names += sorted({k[1] for k in keys if k[1] and k[1] not in variant_names})
        row = _row(_sum([counts[k] for k in keys]), _merge([reasons[k] for k in keys]), tracked)
        variants = []
        for v in variant_names:
            key = (step, v)
            vrow = _row(counts.get(key, dict.fromkeys(COUNTS, 0)), reasons.get(key, {}), tracked)
            variants.append({"name": v, **vrow})
        d = decisions.get((name, step))
        out.append(
            {
                "name": step,
                "channel": st.channel if st else channels.get(step, ""),
                "removed": st is None,
                **row,
                "variants": variants,
                "decision": _decision(d, tz) if d is not None else None,
            }
        )
    return out


def _sum(rows: list[dict[str, int]]) -> dict[str, int]:
    total = dict.fromkeys(COUNTS, 0)
    for r in rows:
        for k in COUNTS:
            total[k] += r[k]
    return total


def _merge(rows: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for r in rows:
        for k, n in r.items():
            total[k] += n
    return dict(total)


def _row(c: dict[str, int], failed_by: dict[str, int], tracked: bool) -> dict[str, Any]:
    values = dict(c)
    if not tracked:
        values.pop("clicked")
    bases = {**values, "attempted": c["sent"] + c["failed"]}
    return {
        **values,
        "failed_by_reason": dict(sorted(failed_by.items(), key=lambda kv: (-kv[1], kv[0]))),
        "rates": {
            k: rate(bases[a], bases[b], LABELS[b])
            for k, (a, b) in STEP_RATES.items()
            if a in values
        },
    }


def _decision(d: Any, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "winner": d.winner,
        "metric": d.metric,
        "rule": d.rule,
        "reason": d.reason,
        "z": d.z,
        "p_value": d.p_value,
        "confidence": d.confidence,
        "decided_at": d.decided_at.astimezone(tz).isoformat(),
        "figures": d.figures,
    }


def _days(
    s: Any,
    name: str,
    since: datetime | None,
    tz: ZoneInfo,
    segments: list[tuple[str, str | None, str]],
    replies_all: list[Any],
) -> list[dict[str, Any]]:
    """[{day, sends: {channel: n}, replies}]: every day in `tz` from the first to the last with
    a send or a reply (a quiet day shows as 0). Sends are counted per day in SQL (a range of
    the index per day); replies, far fewer, per UTC minute and folded into days here."""
    from campaignctl.store import report as q

    replies: dict[date, int] = defaultdict(int)
    for camp, minute, n in replies_all:
        if camp != name:
            continue
        at = datetime.fromisoformat(minute).replace(tzinfo=UTC)
        replies[at.astimezone(tz).date()] += n
    ends = [t for seg in segments for t in q.send_span(s, name, seg, since) if t is not None]
    bounds_days = [t.astimezone(tz).date() for t in ends] + list(replies)
    if not bounds_days:
        return []
    start, end = min(bounds_days), max(bounds_days)
    count = (end - start).days + 1
    day_list = [date.fromordinal(start.toordinal() + i) for i in range(count)]
    # each local midnight as an instant (a day of 23 or 25 hours when the clocks change)
    bounds = [
        datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)
        for d in [*day_list, date.fromordinal(end.toordinal() + 1)]
    ]
    channels = sorted({ch for _st, _v, ch in segments})
    sends = {ch: [0] * count for ch in channels}
    if ends:
        for segment in sorted(segments, key=lambda x: (x[0], x[1] or "", x[2])):
            per_day = q.sends_between(s, name, segment, bounds)
            for i, n in enumerate(per_day):
                sends[segment[2]][i] += n
    return [
        {
            "day": d.isoformat(),
            "sends": {ch: sends[ch][i] for ch in channels},
            "replies": replies.get(d, 0),
        }
        for i, d in enumerate(day_list)
    ]


def parse_since(text: str, timezone: str, now: datetime) -> datetime:
    """`--since`: a date as `messages list --since` takes it (`2026-03-02`, midnight in
    `timezone`; `2026-03-02T09:30`), or a duration back from `now` (`7d`, `12h`: timespec)."""
    from campaignctl.errors import UsageError
    from campaignctl.message_listing import parse_since as parse_date
    from campaignctl.timespec import parse_duration

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_date(text, timezone)
    except UsageError:
        raise UsageError(
            f"--since {text!r}: not a date or a duration; use YYYY-MM-DD or YYYY-MM-DDTHH:MM "
            f"(in {timezone} unless an offset such as +08:00 is given), or a duration back "
            "from now such as 7d or 12h"
        ) from None


def check_out(path: Path) -> None:
    """Refuse an `--out` whose folder does not exist (or is not a folder), before any work."""
    from campaignctl.errors import UsageError

    folder = path.parent
    if not folder.is_dir():
        raise UsageError(
            f"--out {path}: no folder {folder}",
            f"create it first (mkdir -p {folder}), or write the report elsewhere",
        )
    if path.is_dir():
        raise UsageError(f"--out {path}: is a folder; give a file name, e.g. {path}/report.html")


def write_out(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a temp file in the same folder, then a rename, so a
    reader never sees half a report and a failed write leaves the old file as it was."""
    from campaignctl.errors import CampaignctlError
    from campaignctl.files import write_atomic

    write_atomic(
        path,
        text,
        folder_error=lambda exc: CampaignctlError(
            f"--out {path}: cannot write in {path.parent}: {exc.strerror}"
        ),
    )
