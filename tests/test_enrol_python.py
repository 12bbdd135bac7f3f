"""Audiences SQL cannot decide, settled in Python a batch of rows at a time
(`Enrolment._settle_picks`, `AudienceMatcher.row_verdict`): the same leads match as
`compile_audience` says lead by lead, with each distinct value of the fields an expression
reads evaluated once (issue 15: a first pass over 1,000,000 leads)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaignctl.audience import Opaque, fields_read
from campaignctl.engine import enrol
from campaignctl.engine.enrol import AudienceMatcher, Enrolment
from campaignctl.store import Lead, Store
from campaignctl.store import enrolment as store_enrolment
from campaignctl.store import leads as store_leads
from tests.support.databases import DATABASES
from tests.test_audience_sql import _python, expression, lead


@pytest.fixture(scope="module", params=DATABASES)
def db(request: pytest.FixtureRequest) -> Iterator[Store]:
    """One store for the module, on SQLite and on PostgreSQL (as tests/test_audience_sql.py)."""
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='enrol-python-')) / 'a.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database()
    opened = Store(url)
    yield opened
    opened.close()


# expressions only Python reads, the lead as a whole among them
opaque = st.one_of(
    expression,
    st.builds(lambda e: f"({e}) and lead|length > 2", expression),
    st.builds(lambda e: f"lead.get('a') == 1 or ({e})", expression),
    st.sampled_from(["lead['a']|string == '1'", "lead.b|string == '1.0'", "a|string == 'True'"]),
)


Settled = tuple[dict[int, bool | None], set[int], dict[int, str]]


def _settle(db: Store, leads: list[dict[str, Any]], expr: str) -> Settled:
    """(lead id -> Python's answer lead by lead, the ids the settled picks enrol, the errors)."""
    with db.write() as s:
        s.connection().exec_driver_sql("DELETE FROM lead")
        rows = [Lead(email=f"{i}@x.com", **fields) for i, fields in enumerate(leads)]
        s.add_all(rows)
        s.flush()
        answers = {
            int(r.id): _python(expr, store_leads.lead_context(r))
            for r in store_leads.by_ids(s, [r.id or 0 for r in rows])
        }
        conn = s.connection()
        store_enrolment.pick(conn, "c", ["sms", "*"], Opaque())
        errors: dict[int, str] = {}
        Enrolment._settle_picks(conn, AudienceMatcher(expr, "audience"), errors)
        picked = {r[0] for r in store_enrolment.picked(conn)}
        s.rollback()
    return answers, picked, errors


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(lead, min_size=1, max_size=8), opaque, st.integers(1, 3))
def test_batched_python_verdicts_agree_lead_by_lead(
    db: Store,
    monkeypatch: pytest.MonkeyPatch,
    leads: list[dict[str, Any]],
    expr: str,
    batch: int,
) -> None:
    monkeypatch.setattr(enrol, "SETTLE_BATCH", batch)
    answers, picked, errors = _settle(db, leads, expr)
    assert picked == {i for i, a in answers.items() if a is True}, expr
    assert set(errors) == {i for i, a in answers.items() if a is None}, expr


def test_values_that_compare_equal_but_print_differently_are_not_one_key(db: Store) -> None:
    """`1`, `1.0` and `true` are equal to Python, not to `|string`: each is evaluated."""
    leads = [{"status": "new", "attrs": {"a": v}} for v in (1, 1.0, True, "1", [1], 1)]
    answers, picked, _ = _settle(db, leads, "lead.a|string == '1'")
    assert sorted(picked) == sorted(i for i, a in answers.items() if a)
    assert len(picked) == 3  # the two 1s and "1"


def test_each_distinct_value_is_evaluated_once(db: Store) -> None:
    """A thousand leads with six distinct (city, tags) values: six evaluations."""
    expr = "lead.city|lower == 'makati' and 'buyer' in tags"
    assert fields_read(expr) == frozenset({"city", "tags"})
    leads: list[dict[str, Any]] = [
        {"status": "new", "tags": [["buyer"], []][i % 2], "attrs": {"city": c, "n": i}}
        for i, c in enumerate(["Makati", "MAKATI", "Taguig"] * 333)
    ]
    matcher = AudienceMatcher(expr, "audience")
    calls = 0
    evaluate = matcher._evaluate

    def counted(ctx: Any) -> bool | str:
        nonlocal calls
        calls += 1
        return evaluate(ctx)

    matcher._evaluate = counted  # type: ignore[method-assign,assignment]
    with db.write() as s:
        s.connection().exec_driver_sql("DELETE FROM lead")
        s.add_all(Lead(email=f"{i}@x.com", **fields) for i, fields in enumerate(leads))
        s.flush()
        conn = s.connection()
        store_enrolment.pick(conn, "c", ["sms", "*"], Opaque())
        Enrolment._settle_picks(conn, matcher, {})
        assert len(store_enrolment.picked(conn)) == 333
        s.rollback()
    assert calls == 6
