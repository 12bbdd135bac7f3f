"""Durations (`1h30m`), sending windows (`08:00-18:00`) and day sets (`mon-fri`).

Pure parsing and membership; what to do at a window's edge is `pacing`'s business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")
#: The longest duration accepted: no delay, backoff or interval needs more, and anything
#: larger would overflow date arithmetic (`datetime + timedelta`) somewhere downstream.
MAX_DURATION = timedelta(days=3650)
_MAX_DURATION_TEXT = "3650d (10 years)"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS: frozenset[int] = frozenset(range(7))
MINUTES_PER_DAY = 24 * 60


def parse_duration(text: str) -> timedelta:
    """`20s`, `3d`, `1h30m`, `2w` -> timedelta. Raises ValueError with a readable message."""
    s = text.strip().lower().replace(" ", "")
    if not _DURATION.fullmatch(s):
        raise ValueError(
            f"invalid duration {text!r}: use a whole number with a unit s, m, h, d or w, "
            "combinable (e.g. '20s', '3d', '1h30m')"
        )
    parts = _PART.findall(s)
    # A number longer than this is over the bound in any unit (and int() refuses 4,300 digits).
    if any(len(n.lstrip("0")) > 12 for n, _ in parts):
        raise ValueError(f"invalid duration {text!r}: at most {_MAX_DURATION_TEXT}")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"invalid duration {text!r}: at most {_MAX_DURATION_TEXT}")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    """The shortest `1d2h`-style spelling of a whole number of seconds (`0s` for zero)."""
    total = int(td.total_seconds())
    if total == 0:
        return "0s"
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        n, total = divmod(total, _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


@dataclass(frozen=True)
class PerSpan:
    """At most `count` in any rolling `span` (`settings.max_per_lead = "2/1d"`)."""

    count: int
    span: timedelta

    def __str__(self) -> str:
        return f"{self.count} in {format_duration(self.span)}"


def parse_per_span(text: str) -> PerSpan:
    """`2/1d`, `1/12h`, `5/1w` -> PerSpan. Raises ValueError with a readable message."""
    form = "use N/DURATION, a whole number of messages per duration, e.g. '2/1d' or '1/12h'"
    count, sep, span = text.strip().partition("/")
    if not sep or not count.strip().isdigit() or len(count.strip()) > 9:
        raise ValueError(f"invalid rate {text!r}: {form}")
    n = int(count)
    if n < 1:
        raise ValueError(f"invalid rate {text!r}: the number must be at least 1; {form}")
    try:
        td = parse_duration(span)
    except ValueError as exc:
        raise ValueError(f"invalid rate {text!r}: {exc}") from None
    if td <= timedelta(0):
        raise ValueError(f"invalid rate {text!r}: the duration must be longer than 0s; {form}")
    return PerSpan(n, td)


@dataclass(frozen=True)
class Window:
    """Daily sending hours in minutes since midnight: start inclusive, end exclusive.

    `end` may be 1440 (`24:00`); `start > end` means the window wraps midnight.
    """

    start: int
    end: int

    @property
    def wraps(self) -> bool:
        return self.start > self.end

    def contains(self, minute: int) -> bool:
        if self.wraps:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end

    def __str__(self) -> str:
        return f"{_fmt_hm(self.start)}-{_fmt_hm(self.end)}"


def _fmt_hm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _parse_hm(text: str, *, is_end: bool) -> int:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m:
        raise ValueError(f"invalid time {text!r}: use HH:MM")
    hh, mm = int(m.group(1)), int(m.group(2))
    if hh == 24 and mm == 0 and is_end:
        return MINUTES_PER_DAY
    if hh > 23 or mm > 59:
        raise ValueError(
            f"invalid time {text!r}: hours 00-23 (24:00 only as an end), minutes 00-59"
        )
    if is_end and (hh, mm) == (23, 59):
        return MINUTES_PER_DAY  # people write 23:59 meaning "until the end of the day"
    return hh * 60 + mm


def parse_window(text: str) -> Window:
    """`08:00-18:00`, `21:00-08:00` (wraps midnight), `00:00-24:00`."""
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(f"invalid window {text!r}: use HH:MM-HH:MM, e.g. '08:00-18:00'")
    start = _parse_hm(parts[0], is_end=False)
    end = _parse_hm(parts[1], is_end=True)
    if start == end:
        raise ValueError(f"invalid window {text!r}: start and end are the same time")
    return Window(start, end)


_DAYS_FORMS = "use 'mon-fri', 'sat,sun', 'mon-sun' or '*' (days: mon tue wed thu fri sat sun)"
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_days(text: str) -> frozenset[int]:
    """`mon-fri`, `sat,sun`, `mon-sun`, `*`, `fri-mon` -> weekday numbers (Monday is 0).

    Items are separated by commas; each is a day or a range of exactly two days (wrapping
    past Sunday). Days are three-letter abbreviations or full English names.
    """
    s = text.strip().lower()
    if s in ("*", "all", "daily"):
        return ALL_DAYS
    days: set[int] = set()
    for item in s.split(","):
        ends = [_day(x, text) for x in item.split("-")]
        if len(ends) > 2:
            raise ValueError(f"invalid days {text!r}: a range has two ends; {_DAYS_FORMS}")
        a, b = ends[0], ends[-1]
        i = a
        while True:
            days.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    return frozenset(days)


def _day(name: str, text: str) -> int:
    key = name.strip().lower()
    if key in DAY_NAMES:
        return DAY_NAMES.index(key)
    if key in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(key)
    what = f"unknown day {name.strip()!r}" if key else "a day is missing"
    raise ValueError(f"invalid days {text!r}: {what}; {_DAYS_FORMS}")


def format_days(days: frozenset[int]) -> str:
    if days == ALL_DAYS:
        return "mon-sun"
    return ",".join(DAY_NAMES[d] for d in sorted(days))
