"""The circuit breaker as a pure function of recorded attempts and `now`."""

from __future__ import annotations

from datetime import timedelta

from campaignctl.breaker import MAX_PAUSE, PROBE_TIMEOUT, Attempt, Breaker, pause
from tests.support import T0


def _fail(minutes: float) -> Attempt:
    return Attempt(T0 + timedelta(minutes=minutes), False, "503")


def test_trips_on_mostly_transient_failures_only_with_enough_attempts() -> None:
    b = Breaker().record([_fail(0), _fail(1), _fail(2), _fail(3)])
    assert b.gate(T0 + timedelta(minutes=3)) is None  # four attempts are not enough
    ok = Attempt(T0 + timedelta(minutes=3, seconds=30), True)
    assert Breaker().record([_fail(0), ok, _fail(1), ok, _fail(2)]).trips == 0  # 60 % failed
    b = b.record([_fail(4)])
    assert b.trips == 1
    assert b.gate(T0 + timedelta(minutes=4, seconds=59)) == 0
    assert b.until == T0 + timedelta(minutes=5)
    old = Breaker().record([_fail(0), _fail(1), _fail(2), _fail(3), _fail(30)])
    assert old.trips == 0  # failures outside the window do not count


def test_one_probe_then_a_longer_pause_or_closed() -> None:
    b = Breaker().record([_fail(m) for m in range(5)])
    at = b.until
    assert at is not None
    assert b.gate(at) == 1
    probing = b.probe(at)
    assert probing.gate(at) == 0  # the others wait for the probe's outcome
    assert probing.gate(at + PROBE_TIMEOUT) == 1  # a probe whose process died is replaced
    again = probing.record([Attempt(at, False, "503")])
    assert (again.trips, again.until) == (2, at + timedelta(minutes=2))
    closed = again.probe(at).record([Attempt(at, True)])
    assert closed.gate(at) is None
    assert closed.quiet()
    assert pause(1) == timedelta(minutes=1)
    assert pause(3) == timedelta(minutes=4)
    assert pause(50) == MAX_PAUSE
    assert Breaker.from_json(again.to_json()) == again
    assert Breaker.from_json("not json") == Breaker()
