"""Batches of one statement over many rows, without SQLAlchemy's work per row.

`Connection.execute(stmt, rows)` compiles the statement (from its cache) and then, for every
row, builds the parameters again through the compiler and each column's type: for the engine's
claim and record batches (a thousand rows of up to 17 values at a time in a dry run) that was
more than the database's own work. `many` compiles the statement once per dialect and key,
looks up each bind's processor once, and hands the driver the processed rows in one
executemany: the same SQL, the same values, bound as SQLAlchemy binds them.

Only for statements whose every value is an explicit `bindparam` present in every row
(UPDATEs by key): an INSERT that leaves columns to their defaults goes through
`Connection.execute`, which fills them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeAlias, cast

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Dialect
    from sqlalchemy.sql.compiler import SQLCompiler
    from sqlalchemy.sql.expression import ClauseElement

Executable: TypeAlias = "ClauseElement"
#: A bind: (name, its type's processor or None, False), or (name, its processed value, True)
#: for a value written in the statement itself.
_Bind: TypeAlias = tuple[str, Any, bool]
#: The SQL, its binds in the driver's order (positional) or any order (named), positional.
_Compiled: TypeAlias = tuple[str, list[_Bind], bool]
#: (dialect name, driver, key) -> the statement compiled for that dialect
_COMPILED: dict[tuple[Hashable, ...], _Compiled] = {}


def many(
    c: Connection,
    key: Hashable,
    build: Callable[[], Executable],
    rows: Sequence[dict[str, Any]],
) -> None:
    """Run the statement `build()` returns (the same one for the same `key`) once per row of
    `rows`, each a dict holding every bind of the statement by name."""
    if not rows:
        return
    dialect = c.dialect
    entry = _COMPILED.get((dialect.name, dialect.driver, key))
    if entry is None:
        entry = _compile(build(), dialect)
        _COMPILED[(dialect.name, dialect.driver, key)] = entry
    sql, binds, positional = entry
    n = len(rows)
    columns: list[Iterable[Any]] = []
    for name, process, fixed in binds:
        if fixed:  # a value written in the statement (`state == "active"`), processed once
            columns.append(repeat(process, n))
        elif process is None:
            columns.append(list(map(itemgetter(name), rows)))
        else:
            columns.append(_processed(process, map(itemgetter(name), rows)))
    params: list[Any] = list(zip(*columns, strict=True))
    if not positional:
        names = [name for name, _, _ in binds]
        params = [dict(zip(names, values, strict=True)) for values in params]
    c.exec_driver_sql(sql, params)


def _processed(process: Callable[[Any], Any], values: Iterable[Any]) -> list[Any]:
    """Each value through its bind processor; a time (a batch holds few distinct ones: its
    `now` in every row) only once."""
    seen: dict[datetime, Any] = {}
    out = []
    for value in values:
        if type(value) is datetime:
            if value not in seen:
                seen[value] = process(value)
            out.append(seen[value])
        else:
            out.append(process(value))
    return out


def _compile(stmt: Executable, dialect: Dialect) -> _Compiled:
    compiled = cast("SQLCompiler", stmt.compile(dialect=dialect))
    names = compiled.positiontup
    binds: list[_Bind] = []
    for name in names if names is not None else compiled.binds:
        bp = compiled.binds[name]
        process = bp.type.dialect_impl(dialect).bind_processor(dialect)
        if bp.required:  # a value per row, by name
            binds.append((name, process, False))
        else:
            value = bp.effective_value
            binds.append((name, value if process is None else process(value), True))
    return compiled.string, binds, names is not None
