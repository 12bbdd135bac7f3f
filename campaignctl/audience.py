"""Audience filters and `--where`: sandboxed Jinja2 expressions over a lead's fields.

`status == 'new' and 'buyer' in tags`, `lead.city == 'Makati' and lead.budget_max > 5000000`.
Fixed fields and attributes are reachable bare and as `lead.<name>`.

- Tags compare case-insensitively: `'Buyer' in tags` matches a lead tagged `buyer` (tags are
  stored lower-case, `campaignctl.values`).
- Attribute values that look numeric are stored as numbers, so they compare as numbers.
- A comparison on a field the lead does not have is false (`==`, `!=`, `<`, `in`, `not in`
  alike): the lead does not match, and nothing fails.
- An expression that fails on a lead's data (`lead.city > 5` on a text city, `lead.budget|int`
  without a budget) raises `AudienceError`; the engine skips that lead, with the reason, instead
  of stopping.

`condition(expr)` reads the part of an expression that a database can evaluate (comparisons on
fields, tags, and/or/not, `in [...]` lists) as a `Cond` tree; `store.audience_sql` turns it into
SQL, and whatever it cannot read stays to Python (`Opaque`), with the same answer either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from json.scanner import make_scanner
from typing import Any

from jinja2.runtime import Undefined

from campaignctl.errors import CampaignctlError
from campaignctl.store.fields import LEAD_FIXED_FIELDS

FIXED_FIELDS = LEAD_FIXED_FIELDS
#: Longer expressions are refused before parsing: an audience is a line, not a program, and
#: Jinja's parser and code generator recurse once per nested operand.
MAX_EXPRESSION_CHARS = 2000


class AudienceError(CampaignctlError):
    """An audience or --where expression that does not compile, or fails on one lead."""


class AudienceRefused(AudienceError):
    """The sandbox refused what the expression does (a limit, or Python internals): a fault of
    the expression, whatever the lead, so `check` reports it as an error, not a skipped lead."""


class Missing(Undefined):
    """A field the lead does not have: every comparison on it is false (`lead.city != 'X'`
    too); arithmetic and filters that need a value still fail, as with any undefined."""

    __slots__ = ()

    def _false(self, other: Any) -> bool:
        return False

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]
    __hash__ = Undefined.__hash__

    def __contains__(self, item: Any) -> bool:
        return False


class Tags(list[str]):
    """A lead's tags (stored lower-case): `'Buyer' in tags` is `'buyer' in tags`."""

    def __contains__(self, item: object) -> bool:
        return super().__contains__(item.lower() if isinstance(item, str) else item)


@lru_cache(maxsize=1)
def _env() -> Any:
    from campaignctl.sandbox import CappedSandbox

    # capped like templates; intercepting `*` and `**` also stops Jinja from folding
    # `10**(10**10)` at compile time, which would hang before any lead is seen
    return CappedSandbox(undefined=Missing)


def _parse(expr: str, rewrite_notin: bool = True) -> Any:
    """The expression's Jinja node, with `a not in b` read as "both defined, and not a in b",
    so a condition on a missing field is false whichever way it is written."""
    from jinja2 import nodes
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.parser import Parser

    env = _env()
    parser = Parser(env, expr, state="variable")
    node = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)

    def rewrite(n: Any) -> Any:
        for field in n.fields:
            value = getattr(n, field)
            if isinstance(value, nodes.Node):
                setattr(n, field, rewrite(value))
            elif isinstance(value, list):
                setattr(n, field, [rewrite(v) if isinstance(v, nodes.Node) else v for v in value])
        if isinstance(n, nodes.Compare) and len(n.ops) == 1 and n.ops[0].op == "notin":
            left, right = n.expr, n.ops[0].expr
            defined = nodes.And(
                nodes.Test(left, "defined", [], [], None, None),
                nodes.Test(right, "defined", [], [], None, None),
            )
            inside = nodes.Compare(left, [nodes.Operand("in", right)])
            return nodes.And(defined, nodes.Not(inside))
        return n

    if rewrite_notin:
        node = rewrite(node)
    node.set_environment(env)
    return node


def _compile(expr: str) -> Callable[[Mapping[str, Any]], Any]:
    """The expression as a function of a lead context: Jinja's `TemplateExpression` called as
    `compiled(**lead, lead=lead)`, without its cost per call (it merges the template's globals,
    a ChainMap, into each lead's variables twice): the globals are flattened once here."""
    from jinja2 import nodes

    node = _parse(expr)
    body = [nodes.Assign(nodes.Name("result", "store"), node, lineno=1)]
    template = _env().from_string(nodes.Template(body, lineno=1))
    env, name, blocks = template.environment, template.name, template.blocks
    render, context_class = template.root_render_func, env.context_class
    flat = dict(template.globals)

    def evaluate(lead: Mapping[str, Any]) -> Any:
        if "lead" in lead:  # as `compiled(**lead, lead=lead)` would refuse it
            raise TypeError("got multiple values for keyword argument 'lead'")
        parent = dict(flat, **lead)
        parent["lead"] = lead
        context = context_class(env, parent, name, blocks, globals=flat)
        for _ in render(context):
            pass
        return context.vars["result"]

    return evaluate


def compile_audience(
    expr: str | None, where: str = "audience"
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over a lead context (see `lead_context`). None or blank matches every lead."""
    if expr is None or not expr.strip():
        return lambda _lead: True
    from jinja2 import TemplateSyntaxError
    from jinja2.exceptions import SecurityError

    if len(expr) > MAX_EXPRESSION_CHARS:
        raise AudienceError(
            f"{where}: expression too long ({len(expr):,} characters, at most "
            f"{MAX_EXPRESSION_CHARS:,})",
            "filter on a tag instead: `campaignctl leads import FILE --tag TAG`, then "
            "audience = \"'TAG' in tags\"",
        )
    from campaignctl.isolation import LimitExceeded, memory_message, working_on

    try:
        working_on(where)
        compiled = _compile(expr)
    except LimitExceeded as exc:
        raise AudienceError(f"{where}: {exc.detail}") from None
    except TemplateSyntaxError as exc:
        raise AudienceError(
            f"{where}: invalid expression {_short(expr)}: {exc.message}",
            "expressions look like: status == 'new' and 'buyer' in tags",
        ) from None
    except (RecursionError, MemoryError, SyntaxError):
        # Parentheses or operators nested hundreds deep: Jinja's parser, or Python's compiler
        # behind it, gives up.
        raise AudienceError(
            f"{where}: expression nested too deeply to evaluate: {_short(expr)}",
            "expressions look like: status == 'new' and 'buyer' in tags",
        ) from None

    def matches(lead: Mapping[str, Any]) -> bool:
        try:
            working_on(where)
            return bool(compiled(lead))
        except LimitExceeded as exc:  # in an earlier worker (see isolation.py)
            raise AudienceRefused(f"{where}: {exc.detail}") from None
        except MemoryError:
            raise AudienceRefused(f"{where}: {memory_message()}") from None
        except SecurityError as exc:
            raise AudienceRefused(f"{where}: cannot evaluate {_short(expr)}: {exc}") from None
        except Exception as exc:  # a type error on one lead's data must not stop the pass
            raise AudienceError(f"{where}: cannot evaluate {_short(expr)}: {exc}") from None

    return matches


def fields_read(expr: str | None) -> frozenset[str] | None:
    """The lead's fields `expr` reads: its bare names and each `lead.NAME` or `lead['NAME']`;
    None when it reads the lead as a whole (`lead.get('x')`, `lead|length`, `lead[key]`). Two
    leads whose values for these fields are the same get the same answer."""
    if expr is None or not expr.strip():
        return frozenset()
    from jinja2 import nodes

    names: set[str] = set()
    whole = False

    def walk(n: Any) -> None:
        nonlocal whole
        if (
            isinstance(n, nodes.Getattr | nodes.Getitem)
            and isinstance(n.node, nodes.Name)
            and n.node.name == "lead"
        ):
            key = n.attr if isinstance(n, nodes.Getattr) else None
            if isinstance(n, nodes.Getitem) and isinstance(n.arg, nodes.Const):
                key = n.arg.value if isinstance(n.arg.value, str) else None
            # `lead.items` is the dict's method, whatever the lead holds
            if key is None or key.startswith("_") or hasattr(dict, key):
                whole = True
            else:
                names.add(key)
            return
        if isinstance(n, nodes.Name):
            if n.name == "lead":
                whole = True
            else:
                names.add(n.name)
            return
        for child in n.iter_child_nodes():
            walk(child)

    walk(_parse(expr, rewrite_notin=False))
    return None if whole else frozenset(names)


def _short(expr: str, limit: int = 80) -> str:
    """The expression quoted for a one-line message, cut when long."""
    return repr(expr) if len(expr) <= limit else repr(expr[: limit - 1] + "…")


def lead_context(
    *,
    email: str | None,
    phone: str | None,
    first_name: str | None,
    last_name: str | None,
    timezone: str | None,
    status: str,
    tags: list[str],
    attrs: Mapping[str, Any],
    id: int | None = None,
) -> dict[str, Any]:
    """What templates and audience expressions see as `lead`: set values only, attributes included.

    Missing values are left out rather than set to None, so
    `{{ lead.first_name | default('there') }}` falls back, and a bare `{{ lead.first_name }}`
    is reported as undefined instead of printing None.
    """
    ctx: dict[str, Any] = {k: v for k, v in attrs.items() if v not in (None, "")}
    fixed = {
        "email": email,
        "phone": phone,
        "first_name": first_name,
        "last_name": last_name,
        "timezone": timezone,
        "status": status,
    }
    ctx.update({k: v for k, v in fixed.items() if v not in (None, "")})
    ctx["tags"] = Tags(tags)
    if id is not None:
        ctx["id"] = id
    return ctx


_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def loads(text: str) -> Any:
    """`json.loads` of stored JSON (tags, attributes) without its cost per call: the C scanner
    straight away, and `json.loads` itself for anything but one plain value (its errors)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def row_context(row: Any, *, tags: bool = True, attrs: bool = True) -> dict[str, Any]:
    """`lead_context` of a lead row (id, email, phone, first_name, last_name, timezone, status,
    tags, attrs: the JSON columns as stored text); `tags`, `attrs`: decode them (an expression
    that does not read them sees them empty)."""
    lead_id, email, phone, first, last, timezone, status, tags_text, attrs_text = row
    return lead_context(
        id=lead_id,
        email=email,
        phone=phone,
        first_name=first,
        last_name=last,
        timezone=timezone,
        status=status,
        tags=loads(tags_text) if tags and tags_text else [],
        attrs=loads(attrs_text) if attrs and attrs_text else {},
    )


def _top_level(expr: str, word: str) -> list[str]:
    """`expr` split on the operator `word` (and, or) where it is outside brackets and quotes."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif (
            depth == 0
            and expr.startswith(word, i)
            and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] == "_"))
            and (
                i + len(word) == len(expr)
                or not (expr[i + len(word)].isalnum() or expr[i + len(word)] == "_")
            )
        ):
            parts.append(expr[start:i].strip())
            start = i + len(word)
            i = start
            continue
        i += 1
    parts.append(expr[start:].strip())
    return [p for p in parts if p]


def why_not(expr: str, lead: Mapping[str, Any], where: str = "audience") -> str:
    """Which part of `expr` a lead it does not match fails on, in words: the first condition of
    a top-level `and` that is false (or fails), or every alternative of a top-level `or`."""
    terms = _top_level(expr, "and")
    if len(terms) > 1:
        for term in terms:
            answer = _answer(term, lead, where)
            if answer is not True:
                return f"{_short(term)} is {answer}"
        return f"{_short(expr)} is false"
    alternatives = _top_level(expr, "or")
    if len(alternatives) > 1:
        return "none of " + ", ".join(_short(a) for a in alternatives) + " is true"
    return f"{_short(expr)} is {_answer(expr, lead, where)}"


def _answer(expr: str, lead: Mapping[str, Any], where: str) -> bool | str:
    """True, "false", or "not computable (the error)" for one lead."""
    try:
        return True if compile_audience(expr, where)(lead) else "false"
    except AudienceError as exc:
        return f"not computable ({exc.message.split(': ', 1)[-1]})"


# ---------------------------------------------------------------- the part a database can read


@dataclass(frozen=True)
class Compare:
    """`field OP value`: OP one of == != < <= > >=; value a str, int or float."""

    field: str
    op: str
    value: str | int | float


@dataclass(frozen=True)
class OneOf:
    """`field in [values]` (`negated`: `not in`)."""

    field: str
    values: tuple[str | int | float, ...]
    negated: bool = False


@dataclass(frozen=True)
class HasTag:
    """`'tag' in tags` (`negated`: `not in`); `tag` lower-case, as tags are stored."""

    tag: str
    negated: bool = False


@dataclass(frozen=True)
class Contains:
    """`value in field` for a field other than tags (`negated`: `not in`): membership in a
    list value, a substring of a text value (a trigger's `item.city in lead.areas`)."""

    field: str
    value: str | int | float
    negated: bool = False


@dataclass(frozen=True)
class And:
    left: Cond
    right: Cond


@dataclass(frozen=True)
class Or:
    left: Cond
    right: Cond


@dataclass(frozen=True)
class Not:
    cond: Cond


@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class Opaque:
    """A part only Python evaluates (a filter, arithmetic, a test, ...)."""


Cond = Compare | OneOf | HasTag | Contains | And | Or | Not | Const | Opaque
_OPS = {"eq": "==", "ne": "!=", "lt": "<", "lteq": "<=", "gt": ">", "gteq": ">="}
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
#: Bare names that are not (only) fields: Jinja's globals and its own names.
_NOT_FIELDS = frozenset(
    {"lead", "loop", "self", "caller", "varargs", "kwargs", "range", "dict", "lipsum"}
    | {"cycler", "joiner", "namespace"}
)


def condition(expr: str | None) -> Cond:
    """The expression as a `Cond` tree (`Opaque` where only Python can evaluate it); `Const(True)`
    for no expression. Raises AudienceError when it does not parse."""
    if expr is None or not expr.strip():
        return Const(True)
    compile_audience(expr)  # the same errors as evaluating it
    from jinja2 import nodes

    def field(n: Any) -> str | None:
        if isinstance(n, nodes.Name) and n.name not in _NOT_FIELDS and not n.name.startswith("_"):
            return str(n.name)
        if (
            isinstance(n, nodes.Getattr)
            and isinstance(n.node, nodes.Name)
            and n.node.name == "lead"
            and not hasattr(dict, n.attr)  # `lead.items` is the dict's method
            and not n.attr.startswith("_")
        ):
            return str(n.attr)
        return None

    def const(n: Any) -> Any:
        """A str, int or float constant (bools as ints), else None."""
        if isinstance(n, nodes.Neg) and isinstance(n.node, nodes.Const):
            v = n.node.value
            return -v if isinstance(v, int | float) and not isinstance(v, bool) else None
        if isinstance(n, nodes.Const) and isinstance(n.value, str | int | float):
            return int(n.value) if isinstance(n.value, bool) else n.value
        return None

    def walk(n: Any) -> Cond:
        if isinstance(n, nodes.And):
            return And(walk(n.left), walk(n.right))
        if isinstance(n, nodes.Or):
            return Or(walk(n.left), walk(n.right))
        if isinstance(n, nodes.Not):
            return Not(walk(n.node))
        if isinstance(n, nodes.Const) and isinstance(n.value, bool):
            return Const(n.value)
        if isinstance(n, nodes.Compare) and len(n.ops) == 1:
            return compare(n.expr, n.ops[0].op, n.ops[0].expr)
        return Opaque()

    def compare(left: Any, op: str, right: Any) -> Cond:
        if op in _OPS:
            name, value = field(left), const(right)
            sym = _OPS[op]
            if name is None:
                name, value, sym = field(right), const(left), _FLIPPED[sym]
            if name is None or value is None or name == "tags":
                return Opaque()
            return Compare(name, sym, value)
        if op not in ("in", "notin"):
            return Opaque()
        negated = op == "notin"
        if field(right) == "tags" and isinstance(tag := const(left), str):
            return HasTag(tag.lower(), negated)
        name = field(left)
        inside = field(right)
        if name is None and inside not in (None, "tags", "id") and (v := const(left)) is not None:
            return Contains(inside, v, negated)
        if name is None or name == "tags" or not isinstance(right, nodes.List | nodes.Tuple):
            return Opaque()
        values = [const(item) for item in right.items]
        if any(v is None for v in values):
            return Opaque()
        return OneOf(name, tuple(values), negated)

    return walk(_parse(expr, rewrite_notin=False))
