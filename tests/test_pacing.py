"""Windows, DST, limits and backoff: pure functions of `now`."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaignctl.pacing import (
    MAX_RETRY_DELAY,
    Hours,
    Limits,
    capacity,
    is_open,
    lead_zone,
    next_open,
    next_slot,
    retry_delay,
    wall_to_utc,
)
from campaignctl.timespec import parse_days, parse_window

NY = ZoneInfo("America/New_York")
MANILA = ZoneInfo("Asia/Manila")


def hours(window: str | None = None, days: str | None = None) -> Hours:
    return Hours(parse_window(window) if window else None, parse_days(days) if days else None)


def local(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).strftime("%a %Y-%m-%d %H:%M %Z")


def test_open_instant_is_returned_unchanged() -> None:
    t = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Manila
    assert next_open(t, hours("08:00-18:00", "mon-fri"), MANILA) == t


def test_after_hours_moves_to_next_morning_in_lead_time() -> None:
    t = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # Monday 19:00 in Manila
    got = next_open(t, hours("08:00-18:00"), MANILA)
    assert local(got, MANILA) == "Tue 2026-03-03 08:00 PST"


def test_friday_evening_moves_to_monday() -> None:
    t = datetime(2026, 3, 6, 23, 30, tzinfo=UTC)  # Friday 18:30 in New York
    got = next_open(t, hours("08:00-18:00", "mon-fri"), NY)
    assert local(got, NY) == "Mon 2026-03-09 08:00 EDT"


def test_window_end_is_exclusive_and_start_inclusive() -> None:
    h = hours("08:00-18:00")
    assert is_open(datetime(2026, 3, 2, 0, 0, tzinfo=UTC), h, MANILA)  # 08:00 local
    assert not is_open(datetime(2026, 3, 2, 10, 0, tzinfo=UTC), h, MANILA)  # 18:00 local


@pytest.mark.parametrize(
    ("utc_hour", "open_"),
    [(13, True), (15, True), (20, True), (23, True), (0, False), (5, False), (12, False)],
)
def test_window_wrapping_midnight(utc_hour: int, open_: bool) -> None:
    """21:00-08:00 in Manila (UTC+8) is 13:00-24:00 UTC."""
    t = datetime(2026, 3, 3, utc_hour, 0, tzinfo=UTC)
    assert is_open(t, hours("21:00-08:00"), MANILA) is open_


def test_wrapping_window_moves_to_its_evening_start() -> None:
    t = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)  # 10:00 local: closed until 21:00
    assert local(next_open(t, hours("21:00-08:00"), MANILA), MANILA) == "Tue 2026-03-03 21:00 PST"


def test_wrapping_window_with_days_is_judged_by_the_local_date() -> None:
    # Saturday 02:00 is after Friday night's start but Saturday is not allowed
    t = datetime(2026, 3, 6, 18, 0, tzinfo=UTC)  # Saturday 02:00 in Manila
    h = hours("21:00-08:00", "mon-fri")
    assert not is_open(t, h, MANILA)
    assert local(next_open(t, h, MANILA), MANILA) == "Mon 2026-03-09 00:00 PST"


def test_dst_gap_window_start_inside_the_gap_opens_at_the_transition() -> None:
    # 2026-03-08: New York clocks jump 02:00 -> 03:00; a 02:30 start does not exist that day
    t = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
    got = next_open(t, hours("02:30-05:00"), NY)
    assert got == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert local(got, NY) == "Sun 2026-03-08 03:00 EDT"


def test_dst_gap_wall_time_maps_to_first_instant_after() -> None:
    got = wall_to_utc(datetime(2026, 3, 29, 2, 30), ZoneInfo("Europe/Berlin"))
    assert got == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST


def test_dst_overlap_window_reopens_in_the_repeated_hour() -> None:
    # 2026-11-01: New York repeats 01:00-02:00. At 01:40 EDT the 01:00-01:30 window is closed,
    # and opens again at 01:00 EST (the second 01:00), one hour of real time later.
    t = datetime(2026, 11, 1, 5, 40, tzinfo=UTC)  # 01:40 EDT
    got = next_open(t, hours("01:00-01:30"), NY)
    assert got == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    assert local(got, NY) == "Sun 2026-11-01 01:00 EST"


def test_dst_overlap_first_occurrence_is_used_first() -> None:
    t = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
    assert next_open(t, hours("01:00-01:30"), NY) == datetime(2026, 11, 1, 5, 0, tzinfo=UTC)


def test_lead_zone_prefers_lead_then_phone_then_default() -> None:
    assert lead_zone("Europe/Paris", "+12125550100", "Asia/Manila").key == "Europe/Paris"
    assert lead_zone(None, "+12125550100", "Asia/Manila").key == "America/New_York"
    assert lead_zone(None, "+639171234567", "UTC").key == "Asia/Manila"
    assert lead_zone("Not/AZone", None, "Asia/Manila").key == "Asia/Manila"
    assert lead_zone(None, "garbage", "Asia/Manila").key == "Asia/Manila"


def _ts(*minutes: float) -> list[datetime]:
    base = datetime(2026, 3, 2, tzinfo=UTC)
    return [base + timedelta(minutes=m) for m in minutes]


def test_daily_limit_is_rolling_24_hours() -> None:
    lim = Limits(daily=3)
    hist = _ts(0, 60, 120)
    now = hist[-1] + timedelta(minutes=1)
    assert capacity(lim, hist, now) == 0
    assert next_slot(lim, hist, now) == hist[0] + timedelta(days=1)
    assert capacity(lim, hist, hist[0] + timedelta(days=1)) == 1


def test_hourly_limit() -> None:
    lim = Limits(daily=100, hourly=2)
    hist = _ts(0, 10)
    assert capacity(lim, hist, hist[-1]) == 0
    assert next_slot(lim, hist, hist[-1]) == hist[0] + timedelta(hours=1)


def test_gap_and_jitter_space_sends() -> None:
    lim = Limits.of(
        type("C", (), {"per_second": 2.0, "min_interval": timedelta(seconds=0), "jitter": None})()
    )
    assert lim.gap == timedelta(seconds=0.5)
    hist = _ts(0)
    assert next_slot(lim, hist, hist[0]) == hist[0] + timedelta(seconds=0.5)
    jittered = next_slot(lim, hist, hist[0], timedelta(seconds=3))
    assert jittered == hist[0] + timedelta(seconds=3.5)
    assert capacity(lim, hist, hist[0]) == 1  # paced channels go one at a time


def test_retry_delay_grows_exponentially_with_bounded_jitter() -> None:
    rng = random.Random(7)
    base = timedelta(minutes=1)
    delays = [retry_delay(a, base, rng) for a in (1, 2, 3, 4)]
    for attempt, d in zip((1, 2, 3, 4), delays, strict=True):
        step = base * 2 ** (attempt - 1)
        assert step <= d <= 2 * step
    assert retry_delay(1, base, rng, retry_after=600) >= timedelta(seconds=600)


def test_retry_delay_late_attempts_and_huge_retry_after_do_not_overflow() -> None:
    rng = random.Random(1)
    assert retry_delay(31, timedelta(days=1), rng) <= timedelta(hours=1)
    three_days = timedelta(days=3)
    for bad in (1e20, float("inf"), float("nan"), -5.0):
        d = retry_delay(2, timedelta(minutes=1), rng, bad, give_up_after=three_days)
        assert timedelta(minutes=2) <= d <= timedelta(minutes=4)
    # a Retry-After within give_up_after is still a floor, even beyond the cap
    d = retry_delay(2, timedelta(minutes=1), rng, 7200.0, give_up_after=three_days)
    assert d == timedelta(hours=2)


@given(
    attempt=st.integers(1, 10_000),
    backoff=st.timedeltas(min_value=timedelta(0)),
    retry_after=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    give_up_after=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3650)),
    seed=st.integers(0, 2**32),
)
def test_retry_delay_is_bounded_for_any_attempt_backoff_and_retry_after(
    attempt: int,
    backoff: timedelta,
    retry_after: float | None,
    give_up_after: timedelta,
    seed: int,
) -> None:
    d = retry_delay(attempt, backoff, random.Random(seed), retry_after, give_up_after=give_up_after)
    assert timedelta(0) <= d
    honoured = retry_after is not None and 0 <= retry_after <= give_up_after.total_seconds()
    assert d <= max(MAX_RETRY_DELAY, give_up_after if honoured else MAX_RETRY_DELAY)
    if honoured:
        assert retry_after is not None
        assert d >= timedelta(seconds=retry_after) - timedelta(microseconds=1)
