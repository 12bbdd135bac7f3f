"""Audience filters and `--where`: sandboxed Jinja2 expressions over a lead's fields.

`status == 'new' and 'buyer' in tags`, `lead.city == 'Makati' and lead.budget_max|int > 5000000`.
Fixed fields and attributes are reachable bare and as `lead.<name>`. An expression that fails
on a lead (`lead.budget|int` or `lead.budget > 5` without a budget) raises `AudienceError`;
the engine skips and counts such leads instead of stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

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


@lru_cache(maxsize=1)
def _env() -> Any:
    from campaignctl.sandbox import CappedSandbox

    # capped like templates; intercepting `*` and `**` also stops Jinja from folding
    # `10**(10**10)` at compile time, which would hang before any lead is seen
    return CappedSandbox()


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
        compiled = _env().compile_expression(expr, undefined_to_none=False)
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
            return bool(compiled(**lead, lead=lead))
        except LimitExceeded as exc:  # in an earlier worker (see isolation.py)
            raise AudienceRefused(f"{where}: {exc.detail}") from None
        except MemoryError:
            raise AudienceRefused(f"{where}: {memory_message()}") from None
        except SecurityError as exc:
            raise AudienceRefused(f"{where}: cannot evaluate {_short(expr)}: {exc}") from None
        except Exception as exc:  # a type error on one lead's data must not stop the pass
            raise AudienceError(f"{where}: cannot evaluate {_short(expr)}: {exc}") from None

    return matches


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
    ctx["tags"] = list(tags)
    if id is not None:
        ctx["id"] = id
    return ctx


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
