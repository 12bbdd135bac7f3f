from datetime import timedelta

import pytest

from campaignctl.timespec import (
    ALL_DAYS,
    format_duration,
    parse_days,
    parse_duration,
    parse_window,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20s", 20),
        ("3d", 259200),
        ("1h30m", 5400),
        ("0d", 0),
        ("0s", 0),
        ("2w", 1209600),
        (" 1H ", 3600),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["", "20", "1.5h", "h", "-1d", "3 days", "1y", "99999999999999999w", "3651d", "9" * 5000 + "s"],
)
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_round_trips():
    for text in ["20s", "1h30m", "2d", "1w1d", "0s"]:
        assert format_duration(parse_duration(text)) == text


def test_window_edges():
    w = parse_window("08:00-18:00")
    assert w.contains(8 * 60)
    assert not w.contains(18 * 60)
    assert w.contains(18 * 60 - 1)
    assert not w.contains(7 * 60 + 59)
    assert parse_window("00:00-24:00").contains(23 * 60 + 59)
    assert parse_window("09:00-23:59").end == 1440


def test_window_wrapping_midnight():
    w = parse_window("21:00-08:00")
    assert w.wraps
    assert w.contains(23 * 60)
    assert w.contains(0)
    assert w.contains(7 * 60 + 59)
    assert not w.contains(8 * 60)
    assert not w.contains(12 * 60)


@pytest.mark.parametrize("text", ["8-18", "08:00", "25:00-26:00", "08:00-08:00", "08:60-09:00"])
def test_bad_windows(text):
    with pytest.raises(ValueError, match="invalid"):
        parse_window(text)


def test_days():
    assert parse_days("mon-fri") == frozenset({0, 1, 2, 3, 4})
    assert parse_days("sat,sun") == frozenset({5, 6})
    assert parse_days("mon-sun") == ALL_DAYS
    assert parse_days("*") == ALL_DAYS
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    with pytest.raises(ValueError, match="unknown day 'funday'"):
        parse_days("funday")


def test_durations_are_bounded_at_ten_years():
    assert parse_duration("3650d") == timedelta(days=3650)
    assert parse_duration("0000000000000000001s") == timedelta(seconds=1)
    with pytest.raises(ValueError, match=r"at most 3650d \(10 years\)"):
        parse_duration("522w")


@pytest.mark.parametrize("text", ["mon-fri-sun", "fri-mon-xyz", "monkey", "mon,", "-fri", "tuesd"])
def test_bad_days_name_the_accepted_forms(text):
    with pytest.raises(ValueError, match="'mon-fri', 'sat,sun', 'mon-sun' or '\\*'"):
        parse_days(text)


def test_days_take_full_names():
    assert parse_days("Monday-Friday") == frozenset(range(5))
    assert parse_days("sat, sunday") == frozenset({5, 6})
