"""Due times, sending windows and channel limits: pure functions of `now` (and an `rng`).

The engine (database) and the planner (memory) both decide with these functions, so `plan`
forecasts exactly what `send` will do. Every datetime here is aware; instants are compared in
UTC and windows are read in the lead's local time.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaignctl.timespec import ALL_DAYS, Window

if TYPE_CHECKING:
    from phonenumbers import PhoneNumber

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------- whose clock


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    """The IANA zone `name`, or None when it is unknown (a lead's stray value never raises)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def phone_zone(phone: str, preferred: str) -> str | None:
    """The time zone a phone number implies: the only one, or `preferred` among several.

    phonenumbers looks the zone up by the longest prefix of the E.164 digits in its table
    (`TIMEZONE_LONGEST_PREFIX`, 9 digits), so a number already in E.164 whose national part
    keeps its digits as written (no `00` or all-zero national number, which its formatting
    would change) has the zone of its first digits: remembered per prefix, as most leads share
    a few thousand of them (tests/test_phone_zone.py holds it to `phone_zone_of`).
    """
    if _prefix_keyed(phone):
        return _prefix_zone(phone[: 1 + _LONGEST_PREFIX], preferred)
    return phone_zone_of(phone, preferred)


#: phonenumbers.timezone.TIMEZONE_LONGEST_PREFIX (tests/test_phone_zone.py checks it)
_LONGEST_PREFIX = 9


def phone_zone_key(phone: str) -> str | None:
    """The prefix of `phone` that decides its zone (`phone_zone` answers the same for every
    number with it), or None when the whole number must be looked at."""
    return phone[: 1 + _LONGEST_PREFIX] if _prefix_keyed(phone) else None


#: phonenumbers.COUNTRY_CODE_TO_REGION_CODE, once imported
_COUNTRY_CODES: dict[int, object] | None = None


def _prefix_keyed(phone: str) -> bool:
    global _COUNTRY_CODES
    if not (phone.startswith("+") and phone[1:].isdigit() and 8 <= len(phone) <= 16):
        return False
    codes = _COUNTRY_CODES
    if codes is None:
        from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

        codes = _COUNTRY_CODES = dict(COUNTRY_CODE_TO_REGION_CODE)
    for size in (1, 2, 3):
        if int(phone[1 : 1 + size]) in codes:
            rest = phone[1 + size :]
            return not rest.startswith("00") and rest.strip("0") != ""
    return False


@lru_cache(maxsize=65536)
def _prefix_zone(prefix: str, preferred: str) -> str | None:
    """The zone of the numbers starting with `prefix` (itself a number `_prefix_keyed` takes:
    its own digits are the ones looked up)."""
    return phone_zone_of(prefix, preferred)


@lru_cache(maxsize=65536)
def phone_zone_of(phone: str, preferred: str) -> str | None:
    """The time zone a phone number implies: the only one, or `preferred` among several.

    Leads' phones are stored in E.164, so the country code is read off the digits and the
    number's prefix is looked up in phonenumbers' geographic time-zone table directly: a
    fraction of the cost of parsing and classifying the number first, which matters when a
    plan reads 100,000 leads.
    """
    import phonenumbers
    from phonenumbers import timezone as pn_timezone

    num = _e164(phone)
    if num is None:
        try:
            num = phonenumbers.parse(phone, None)
        except phonenumbers.NumberParseException:
            return None
    zones = [z for z in pn_timezone.time_zones_for_geographical_number(num) if z != "Etc/Unknown"]
    if not zones:
        return None
    return preferred if preferred in zones else zones[0]


def _e164(phone: str) -> PhoneNumber | None:
    import phonenumbers

    if not (phone.startswith("+") and phone[1:].isdigit() and 8 <= len(phone) <= 16):
        return None
    for size in (1, 2, 3):
        cc = int(phone[1 : 1 + size])
        if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            rest = phone[1 + size :]
            return phonenumbers.PhoneNumber(
                country_code=cc,
                national_number=int(rest),
                italian_leading_zero=rest.startswith("0") or None,
            )
    return None


def lead_zone(timezone: str | None, phone: str | None, default: str) -> ZoneInfo:
    """A lead's local zone: its own `timezone`, else its phone number's, else `default`."""
    if timezone:
        z = zone(timezone)
        if z is not None:
            return z
    if phone:
        name = phone_zone(phone, default)
        if name:
            z = zone(name)
            if z is not None:
                return z
    return zone(default) or ZoneInfo("UTC")


# ---------------------------------------------------------------- windows


@dataclass(frozen=True)
class Hours:
    """When a channel may deliver, in the recipient's local time. None means always."""

    window: Window | None = None
    days: frozenset[int] | None = None

    @property
    def always(self) -> bool:
        return self.window is None and (self.days is None or self.days == ALL_DAYS)


def is_open(t: datetime, hours: Hours, tz: tzinfo) -> bool:
    """Whether `t` falls inside `hours` read on the local clock of `tz`.

    A wrapping window (`21:00-08:00`) is judged by the local date of the instant itself, so
    with `days = "mon-fri"` Saturday 02:00 is closed.
    """
    if hours.always:
        return True
    local = t.astimezone(tz)
    if hours.days is not None and local.weekday() not in hours.days:
        return False
    return hours.window is None or hours.window.contains(local.hour * 60 + local.minute)


def wall_to_utc(wall: datetime, tz: tzinfo, fold: int = 0) -> datetime:
    """The first instant whose local time in `tz` is `wall` (naive) or later.

    In a DST overlap `fold` picks the occurrence; in a DST gap the wall time does not exist and
    the answer is the transition itself (the first instant after the gap).
    """
    a = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
    if a.astimezone(tz).replace(tzinfo=None) == wall:
        return a
    # A gap: fold=1 lands before the transition, fold=0 after; find the second (whole seconds).
    lo = int(wall.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    hi = int(a.timestamp())
    if lo > hi:
        lo, hi = hi, lo
    off = datetime.fromtimestamp(lo, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == off:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


@lru_cache(maxsize=65536)
def next_open(t: datetime, hours: Hours, tz: tzinfo) -> datetime:
    """The first instant >= `t` at which `hours` are open in `tz` (`t` itself when open).

    The window opens only at a local window start, a local midnight (a new allowed day), or a
    DST transition that jumps over either; each is tried, both occurrences in an overlap.
    Cached: a pass asks the same question for every lead of a zone at the same `now`.
    """
    if is_open(t, hours, tz):
        return t
    local_date = t.astimezone(tz).date()
    starts = [0]
    if hours.window is not None and hours.window.start not in starts:
        starts.append(hours.window.start)
    best: datetime | None = None
    for offset in range(-1, 9):
        d = local_date + timedelta(days=offset)
        for minute in starts:
            wall = datetime(d.year, d.month, d.day, minute // 60, minute % 60)
            for fold in (0, 1):
                c = wall_to_utc(wall, tz, fold)
                if c >= t and (best is None or c < best) and is_open(c, hours, tz):
                    best = c
        if best is not None and best.astimezone(tz).date() <= d:
            break
    if best is None:  # no allowed day at all cannot pass validation; stay safe anyway
        raise ValueError(f"sending hours {hours} never open")
    return best


def next_close(t: datetime, hours: Hours, tz: tzinfo) -> datetime | None:
    """The first instant >= `t` at which `hours` are closed in `tz` (None: they never close).

    With `next_open` it cuts time into open and closed stretches, so a caller asking about many
    instants (the planner) can answer from the stretches. While the local clock runs on, the
    window closes only at a local window end or a local midnight (a day that is not allowed);
    a DST transition before the first such instant is checked on its own.
    """
    if hours.always:
        return None
    if not is_open(t, hours, tz):
        return t
    local_date = t.astimezone(tz).date()
    ends = [0]
    if hours.window is not None and hours.window.end % 1440 not in ends:
        ends.append(hours.window.end % 1440)
    best: datetime | None = None
    for offset in range(-1, 9):
        d = local_date + timedelta(days=offset)
        for minute in ends:
            wall = datetime(d.year, d.month, d.day, minute // 60, minute % 60)
            for fold in (0, 1):
                c = wall_to_utc(wall, tz, fold)
                if c > t and (best is None or c < best) and not is_open(c, hours, tz):
                    best = c
        if best is not None and best.astimezone(tz).date() <= d:
            break
    # The local clock jumps at a transition: the instant after the jump may be closed.
    last = best if best is not None else t + timedelta(days=9)
    before = t.astimezone(tz).utcoffset()
    if (last - timedelta(microseconds=1)).astimezone(tz).utcoffset() != before:
        lo, hi = int(t.timestamp()), int(last.timestamp())
        while hi - lo > 1:  # transitions fall on whole seconds
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, tz).utcoffset() == before:
                lo = mid
            else:
                hi = mid
        jump = datetime.fromtimestamp(hi, UTC)
        if t < jump < last:
            return next_close(jump, hours, tz)
    return best


# ---------------------------------------------------------------- limits


@dataclass(frozen=True)
class Ramp:
    """A channel's warm-up (`warmup = { start = 20, days = 30 }`): its daily limit ramps from
    `start` to `daily_limit` over `days` from its first send."""

    start: int
    days: int


def warmup_day(first_send: datetime | None, now: datetime) -> int:
    """The day of the warm-up at `now`: 1 until the first send and in the 24 hours after it,
    then 2, and so on (days counted from the instant of the first send)."""
    if first_send is None or now < first_send:
        return 1
    return (now - first_send) // DAY + 1


def warmup_limit(ramp: Ramp, daily_limit: int, first_send: datetime | None, now: datetime) -> int:
    """The effective daily limit at `now` on a warming-up channel: `start` on day 1, then a
    linear ramp, `start + (daily_limit - start) x (day - 1) / days` rounded down, reaching
    `daily_limit` on day `days + 1` and staying there."""
    day = warmup_day(first_send, now)
    if day > ramp.days:
        return daily_limit
    return min(daily_limit, ramp.start + (daily_limit - ramp.start) * (day - 1) // ramp.days)


@dataclass(frozen=True)
class Limits:
    """A channel's pacing, from its `[channels.NAME]` keys.

    With a `warmup`, `daily` is the limit at the end of the ramp, and `daily_at(now)` the one in
    effect (`first_send`, the channel's first send, is filled in by the engine or planner)."""

    daily: int | None = None
    hourly: int | None = None
    gap: timedelta = timedelta(0)  # the larger of min_interval and 1/per_second
    jitter: timedelta = timedelta(0)
    warmup: Ramp | None = None
    first_send: datetime | None = None

    @classmethod
    def of(cls, ch: object) -> Limits:
        """From a channel config (anything with the ChannelBase keys)."""
        per_second = getattr(ch, "per_second", None)
        min_interval = getattr(ch, "min_interval", None) or timedelta(0)
        gap = max(min_interval, timedelta(seconds=1 / per_second) if per_second else timedelta(0))
        daily = getattr(ch, "daily_limit", None)
        w = getattr(ch, "warmup", None)
        ramp = Ramp(w.start, w.days) if w is not None and daily and w.days >= 1 else None
        return cls(
            daily=daily,
            hourly=getattr(ch, "hourly_limit", None),
            gap=gap,
            jitter=getattr(ch, "jitter", None) or timedelta(0),
            warmup=ramp,
        )

    @property
    def paced(self) -> bool:
        """Whether sends on this channel must be spaced one by one."""
        return bool(self.gap or self.jitter)

    @property
    def counted(self) -> bool:
        """Whether a send here must see the channel's other sends (a limit or pacing)."""
        return bool(self.daily or self.hourly or self.paced)

    @property
    def lookback(self) -> timedelta:
        """How far back the send history matters."""
        if self.daily:
            return DAY
        if self.hourly:
            return HOUR
        return self.gap + self.jitter

    def started(self, first_send: datetime | None) -> Limits:
        """These limits with the channel's first send known (None: it has not sent yet)."""
        return replace(self, first_send=first_send)

    def limits_only(self) -> Limits:
        """The daily and hourly limits (and the ramp) without pacing between sends."""
        return replace(self, gap=timedelta(0), jitter=timedelta(0))

    def daily_at(self, now: datetime) -> int | None:
        """The daily limit in effect at `now` (the warm-up's, while it ramps)."""
        if self.warmup is None or not self.daily:
            return self.daily
        return warmup_limit(self.warmup, self.daily, self.first_send, now)

    def ramp_change(self, now: datetime) -> datetime | None:
        """When the warm-up's daily limit next changes after `now` (None: it no longer does)."""
        if self.warmup is None or not self.daily:
            return None
        day = warmup_day(self.first_send, now)
        if self.first_send is None or day > self.warmup.days:
            return None
        return self.first_send + day * DAY


def _daily_slot(limits: Limits, history: Sequence[datetime], t: datetime) -> datetime:
    """The earliest instant >= `t` at which the daily limit (following its ramp) has room."""
    n = len(history)
    while True:
        daily = limits.daily_at(t)
        if not daily or n < daily:
            return t
        free = history[n - daily] + DAY
        change = limits.ramp_change(t)
        if free <= t or change is None or free <= change:
            return max(t, free)
        t = change  # the ramp raises the limit before then: look again at that instant


def next_slot(
    limits: Limits, history: Sequence[datetime], now: datetime, jitter: timedelta = timedelta(0)
) -> datetime:
    """The earliest instant >= `now` at which one more send keeps every limit.

    `history` is the sorted send instants on the channel (at least `limits.lookback` of them,
    from every process); `jitter` is this gap's random extra, drawn once by the caller. A
    rolling limit of N means no half-open interval of that length ever holds more than N. A
    warming-up channel's daily limit is the one in effect at the instant considered.
    """
    t = now
    n = len(history)
    if limits.daily:
        t = _daily_slot(limits, history, t)
    if limits.hourly and n >= limits.hourly:
        # only the last hour counts: the hourly-th most recent send inside it decides
        t = max(t, history[n - limits.hourly] + HOUR)
    if n and (limits.gap or jitter):
        t = max(t, history[-1] + limits.gap + jitter)
    return t


def capacity(limits: Limits, history: Sequence[datetime], now: datetime) -> int:
    """How many sends may go at `now` at once (1 for paced channels); a big number means many."""
    many = 1 << 30
    cap = 1 if limits.paced else many
    daily = limits.daily_at(now)
    if daily:
        used = len(history) - bisect.bisect_right(history, now - DAY)
        cap = min(cap, daily - used)
    if limits.hourly:
        used = len(history) - bisect.bisect_right(history, now - HOUR)
        cap = min(cap, limits.hourly - used)
    return max(cap, 0)


def draw_jitter(limits: Limits, rng: random.Random) -> timedelta:
    """A gap's random extra, uniform in 0..jitter."""
    if not limits.jitter:
        return timedelta(0)
    return timedelta(seconds=rng.uniform(0, limits.jitter.total_seconds()))


#: The longest wait between two attempts of a message (backoff and its jitter included), so a
#: message retried through a long outage is tried again soon after it ends.
MAX_RETRY_DELAY = timedelta(hours=1)


def retry_delay(
    attempt: int,
    base: timedelta,
    rng: random.Random,
    retry_after: float | None = None,
    cap: timedelta = MAX_RETRY_DELAY,
    *,
    give_up_after: timedelta | None = None,
) -> timedelta:
    """Exponential backoff with full jitter on top: base x 2^(attempt-1) plus up to as much again,
    at most `cap` in all. A provider's `Retry-After` is a floor, unless it is not a finite
    number of seconds or lies beyond `give_up_after` (then it is ignored: no wait that long is
    honest, and the message would only be failed at the end of it).

    Computed in float seconds and clamped before a timedelta is built, so no attempt count,
    backoff or Retry-After overflows.
    """
    cap_s = cap.total_seconds()
    exponent = min(max(attempt - 1, 0), 64)  # 2**64 x any timedelta is a finite float
    step = min(max(base.total_seconds(), 0.0) * 2.0**exponent, cap_s / 2)
    delay = step + rng.uniform(0, step)
    if retry_after is not None:
        limit = (give_up_after or timedelta.max).total_seconds()
        try:
            floor = float(retry_after)
        except (TypeError, ValueError, OverflowError):
            floor = math.nan
        if math.isfinite(floor) and 0 <= floor <= limit:
            delay = max(delay, floor)
    return timedelta(seconds=delay)


def due_after(
    previous: datetime, delay: timedelta, hours: Hours, tz: tzinfo, not_before: datetime | None
) -> datetime:
    """When a step is due: `delay` after `previous` (enrolment or the last send), in hours."""
    t = previous + delay
    if not_before is not None and t < not_before:
        t = not_before
    return next_open(t, hours, tz)


def priority_key(priority: int, due_at: datetime, message_id: int) -> tuple[int, datetime, int]:
    """Who goes first on a shared channel: lower priority number, then older due time, then id."""
    return (priority, due_at, message_id)
