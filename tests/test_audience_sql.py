"""Audiences in SQL agree with Python: the SQL verdict (`store.audience_sql`) is 1 only where
Python matches, 0 only where Python does not match (without an error), and NULL leaves the
lead to Python. Random leads and random expressions (hypothesis)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from campaignctl.audience import (
    And,
    AudienceError,
    Compare,
    HasTag,
    Opaque,
    compile_audience,
    condition,
)
from campaignctl.store import Lead, Store
from campaignctl.store import enrolment as store_enrolment
from campaignctl.store import leads as store_leads
from tests.support.databases import DATABASES


@pytest.fixture(scope="module", params=DATABASES)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """One store for the module (hypothesis runs many examples in one test), on SQLite and on
    PostgreSQL (tests/support/databases.py)."""
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='audience-sql-')) / 'a.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database()
    opened = Store(url)
    yield opened
    opened.close()


ATTRS = ["a", "b", "budget_max"]
FIELDS = [*ATTRS, "status", "first_name", "email", "id", "nope"]
TEXTS = ["", "x", "X", "buyer", "Makati", "10", "abc", "é", "02134"]
NUMBERS = [0, 1, -1, 2, 10, 3000000, 2.5, -0.5, 3000000.0]
TAGS = ["buyer", "vip", "é", "a b", 'q"t']

value = st.one_of(
    st.sampled_from(TEXTS),
    st.sampled_from(NUMBERS),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(TEXTS), max_size=2),
    st.text(max_size=3),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False),
)
lead = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["new", "won", "x", ""]),
        "first_name": st.one_of(st.none(), st.sampled_from(TEXTS)),
        "tags": st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
        "attrs": st.dictionaries(st.sampled_from(ATTRS), value, max_size=3),
    }
)


def _lit(v: Any) -> str:
    return repr(v) if not isinstance(v, bool) else ("true" if v else "false")


const = st.one_of(st.sampled_from(TEXTS), st.sampled_from(NUMBERS), st.booleans())
name = st.sampled_from(FIELDS).flatmap(lambda f: st.sampled_from([f, f"lead.{f}"]))
op = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
atom = st.one_of(
    st.builds(lambda f, o, c: f"{f} {o} {_lit(c)}", name, op, const),
    st.builds(lambda f, o, c: f"{_lit(c)} {o} {f}", name, op, const),
    st.builds(
        lambda t, neg: f"{t!r} {'not in' if neg else 'in'} tags",
        st.sampled_from([*TAGS, "BUYER", "Vip", "É"]),
        st.booleans(),
    ),
    st.builds(
        lambda f, vs, neg: f"{f} {'not in' if neg else 'in'} [{', '.join(map(_lit, vs))}]",
        name,
        st.lists(const, max_size=3),
        st.booleans(),
    ),
    st.builds(  # a constant in a field (a trigger's `item.city in lead.areas`): Contains
        lambda c, f, neg: f"{_lit(c)} {'not in' if neg else 'in'} {f}",
        const,
        name,
        st.booleans(),
    ),
    st.builds(lambda f: f"{f}|int > 1", name),  # Python only
    st.builds(lambda f: f"lead.{f}", st.sampled_from(ATTRS)),  # truthiness: Python only
    st.sampled_from(["true", "false"]),
)
expression = st.recursive(
    atom,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=5,
)


def _python(expr: str, ctx: dict[str, Any]) -> bool | None:
    """True/False, or None when the expression fails on this lead."""
    try:
        return compile_audience(expr)(ctx)
    except AudienceError:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(lead, min_size=1, max_size=8), st.lists(expression, min_size=1, max_size=4))
# SQLite's JSON functions cut a text at NUL: such a lead is left to Python (found by hypothesis)
@example([{"status": "new", "first_name": None, "tags": [], "attrs": {"b": "\x00"}}], ["b != ''"])
def test_sql_verdicts_agree_with_python(
    store: Store, leads: list[dict[str, Any]], exprs: list[str]
) -> None:
    with store.write() as s:
        s.connection().exec_driver_sql("DELETE FROM lead")
        rows = [Lead(email=f"{i}@x.com", **fields) for i, fields in enumerate(leads)]
        s.add_all(rows)
        s.flush()
        contexts = {
            r.id: store_leads.lead_context(r)
            for r in store_leads.by_ids(s, [r.id or 0 for r in rows])
        }
        for expr in exprs:
            verdicts = store_enrolment.verdicts(s, condition(expr))
            for lead_id, ctx in contexts.items():
                sql, py = verdicts[lead_id], _python(expr, ctx)
                if sql is not None:
                    assert bool(sql) is py, (expr, ctx, sql, py)


def test_the_translatable_subset_needs_no_python_on_ordinary_leads(store: Store) -> None:
    expr = "lead.budget_max >= 3000000 and 'Buyer' in tags"
    assert condition(expr) == And(Compare("budget_max", ">=", 3000000), HasTag("buyer"))
    assert isinstance(condition("lead.budget|int > 5"), Opaque)
    with store.write() as s:
        s.connection().exec_driver_sql("DELETE FROM lead")
        leads = [
            Lead(email="a@x.com", tags=["buyer"], attrs={"budget_max": 3000000}),
            Lead(email="b@x.com", tags=["buyer"], attrs={"budget_max": 2999999.5}),
            Lead(email="c@x.com", tags=["vip"], attrs={"budget_max": 5000000}),
            Lead(email="d@x.com", tags=["buyer"]),  # no budget: does not match, no error
            Lead(email="e@x.com", tags=["buyer"], attrs={"budget_max": ""}),
        ]
        s.add_all(leads)
        s.flush()
        got = store_enrolment.verdicts(s, condition(expr))
        assert [got[r.id] for r in leads if r.id is not None] == [1, 0, 0, 0, 0]
        # text against a number: Python refuses, so SQL leaves it to Python
        s.add(Lead(email="f@x.com", tags=["buyer"], attrs={"budget_max": "lots"}))
        s.flush()
        assert sorted(v for v in store_enrolment.verdicts(s, condition(expr)).values() if v) == [1]
        assert None in store_enrolment.verdicts(s, condition(expr)).values()
