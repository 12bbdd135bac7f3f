"""An audience's `Cond` tree (`campaignctl.audience.condition`) as one SQL expression over `lead`.

The expression's value for a row is 1 (the lead matches), 0 (it does not) or NULL: Python must
decide, because the SQL would not say what Python says (an `Opaque` part, a comparison Python
refuses such as text `<` number, a list or object value). `and`/`or` keep Python's order, so
`a and b` is NULL only when Python would have to look at the part that is NULL: the result is
the same as evaluating every lead in Python (tests/test_audience_sql.py holds them together).

Missing fields (absent, JSON null or an empty string, like `audience.lead_context`) compare
false. The JSON access itself is the dialect's (`Dialect.json_field`, `Dialect.has_tag`), and
so is a condition's value: every part is 1, 0 or NULL (`Dialect.truth` makes PostgreSQL's
booleans those numbers; SQLite's already are).
"""

from __future__ import annotations

import json
from typing import Any

from campaignctl.audience import (
    And,
    Compare,
    Cond,
    Const,
    Contains,
    HasTag,
    Not,
    OneOf,
    Opaque,
    Or,
)
from campaignctl.store.dialect import Dialect
from campaignctl.store.fields import LEAD_FIXED_FIELDS

_NULL = "CAST(NULL AS INTEGER)"
_SQL_OPS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TEXT_COLUMNS = frozenset(LEAD_FIXED_FIELDS) - {"tags"}


class _Builder:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"aud{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def cond(self, c: Cond) -> str:
        if isinstance(c, Const):
            return "1" if c.value else "0"
        if isinstance(c, Opaque):
            return "NULL"
        if isinstance(c, And):
            return f"(CASE {self.part(c.left)} WHEN 1 THEN {self.cond(c.right)} WHEN 0 THEN 0 END)"
        if isinstance(c, Or):
            return f"(CASE {self.part(c.left)} WHEN 0 THEN {self.cond(c.right)} WHEN 1 THEN 1 END)"
        if isinstance(c, Not):
            return f"(CASE {self.part(c.cond)} WHEN 1 THEN 0 WHEN 0 THEN 1 END)"
        if isinstance(c, HasTag):
            quoted = json.dumps(c.tag)
            plain = c.tag.isascii() and quoted == f'"{c.tag}"'
            sql = self.dialect.has_tag(self.param(c.tag), self.param(quoted) if plain else None)
            return _flip(sql) if c.negated else sql
        if isinstance(c, Contains):
            return self.contains(c)

        return self.field(c)

    def part(self, c: Cond) -> str:
        """`cond` where a CASE compares it with 1 and 0: a NULL typed as a number (an untyped
        NULL is a text to PostgreSQL)."""
        sql = self.cond(c)
        return _NULL if sql == "NULL" else sql

    def contains(self, c: Contains) -> str:
        """`value in field`: in a list, an equal item; in a text, a substring (only for a text
        value: Python refuses a number in a text). A missing field makes both `in` and `not in`
        false, as every comparison with it. Anything else (an object, a number) is Python's."""
        # a boolean as the number Python compares it as (True == 1), as SQLite binds it
        needle = self.param(int(c.value) if isinstance(c.value, bool) else c.value)
        flip = "= 0" if c.negated else "> 0"
        found = self.dialect.find_text("{v}", needle)
        substring = self.dialect.truth(f"{found} {flip}") if isinstance(c.value, str) else "NULL"
        quick = None
        if isinstance(c.value, str):  # a quick test on the JSON text before the exact one
            quoted = json.dumps(c.value)
            if c.value.isascii() and quoted == f'"{c.value}"':
                quick = self.param(quoted)
        path = self.param(f'$."{c.field}"')
        has = self.dialect.array_has(path, needle, quick, is_text=isinstance(c.value, str))
        in_array = _flip(has) if c.negated else has
        if c.field in _TEXT_COLUMNS:
            col = f"lead.{c.field}"
            test = substring.format(v=col)
            return f"(CASE WHEN {col} IS NULL OR {col} = '' THEN 0 ELSE {test} END)"
        value, kind = self.dialect.json_field(path)
        return (
            f"(CASE {kind} WHEN 'text' THEN (CASE WHEN {value} = '' THEN 0 "
            f"ELSE {substring.format(v=value)} END) "
            f"WHEN 'array' THEN {in_array} "
            f"WHEN 'null' THEN 0 WHEN 'object' THEN NULL WHEN 'integer' THEN NULL "
            f"WHEN 'real' THEN NULL WHEN 'true' THEN NULL WHEN 'false' THEN NULL ELSE 0 END)"
        )

    def field(self, c: Compare | OneOf) -> str:
        text, num = self.text_test(c), self.number_test(c)
        if c.field == "id":
            return num.format(v="lead.id")
        if c.field in _TEXT_COLUMNS:
            col = f"lead.{c.field}"
            return f"(CASE WHEN {col} IS NULL OR {col} = '' THEN 0 ELSE {text.format(v=col)} END)"
        path = self.param(f'$."{c.field}"')
        value, kind = self.dialect.json_field(path)
        n = num.format(v=self.dialect.json_number(path))
        return (
            f"(CASE {kind} WHEN 'text' THEN (CASE WHEN {value} = '' THEN 0 "
            f"ELSE {text.format(v=value)} END) "
            f"WHEN 'integer' THEN {n} WHEN 'real' THEN {n} WHEN 'true' THEN {n} "
            f"WHEN 'false' THEN {n} WHEN 'array' THEN NULL WHEN 'object' THEN NULL ELSE 0 END)"
        )

    def text_test(self, c: Compare | OneOf) -> str:
        """The test on a present text value `{v}`."""
        return self._test(c, lambda v: isinstance(v, str))

    def number_test(self, c: Compare | OneOf) -> str:
        """The test on a present number `{v}`."""
        return self._test(c, lambda v: not isinstance(v, str))

    def _test(self, c: Compare | OneOf, same: Any) -> str:
        truth = self.dialect.truth
        if isinstance(c, OneOf):
            values = [self.param(_bound(v)) for v in c.values if same(v)]
            if not values:
                return "1" if c.negated else "0"
            inside = f"{{v}} IN ({', '.join(values)})"
            return truth(f"(NOT {inside})" if c.negated else f"({inside})")
        if same(c.value):
            return truth(f"({{v}} {_SQL_OPS[c.op]} {self.param(_bound(c.value))})")
        # text against a number: never equal; ordered, Python refuses (a TypeError)
        return {"==": "0", "!=": "1"}.get(c.op, "NULL")


def _flip(sql: str) -> str:
    """NOT of a part that is 1 or 0."""
    return f"(CASE {sql} WHEN 1 THEN 0 WHEN 0 THEN 1 END)"


def _bound(value: Any) -> Any:
    """A value as bound: a boolean as the number Python compares it as (True == 1)."""
    return int(value) if isinstance(value, bool) else value


def verdict(cond: Cond, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """The SQL expression (1, 0 or NULL per lead row) and its bound parameters."""
    b = _Builder(dialect)
    sql = b.cond(cond)
    if sql not in ("0", "1", "NULL"):
        sql = f"(CASE WHEN {dialect.json_unreliable()} THEN NULL ELSE {sql} END)"
    return (_NULL if sql == "NULL" else sql), b.params
