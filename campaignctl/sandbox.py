"""The sandbox every template and audience expression runs in, with cheap caps on the obvious
ways to take gigabytes or minutes.

Jinja2's `ImmutableSandboxedEnvironment` stops templates from reaching Python's internals, but
not from asking for `'a' * 10**9` or `2**100**100**100`. A filtered sandbox cannot be made safe
from every such request (a loop inside a loop is enough), so `check`, the editing commands and
`preview` render in a child process with hard limits (see `isolation.py`). The caps here catch the
common forms in any process, `send` and the daemon included, which render in-process. They
also stop Jinja from folding such constants at compile time: an intercepted operator and a filter
that raises are left for render time, where the error names the template.
"""

from __future__ import annotations

import math
import re
from typing import Any

from jinja2 import pass_environment
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_format, do_indent, do_wordwrap
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

#: The largest `**` result, in bits (about 1,200 decimal digits); `right * log2|left|` is
#: checked before the power is computed.
MAX_POWER_BITS = 4096
#: The most items (characters for a string, nested items counted) `*` may produce.
MAX_REPEAT = 100_000
#: The widest `center`, `indent`, `wordwrap` width and `format`/`%` field width or precision.
MAX_WIDTH = 1000
#: The most paragraphs `lipsum` may produce.
MAX_LIPSUM = 100

_FORMAT_FIELD = re.compile(r"%[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?")


def _size(seq: Any) -> int:
    """Items a sequence holds, the characters of its strings included (one level deep)."""
    if isinstance(seq, str):
        return len(seq)
    return sum(len(x) if isinstance(x, str | list | tuple) else 1 for x in seq)


def _refuse(message: str) -> SecurityError:
    return SecurityError(f"{message} is too large for a template")


def _check_width(name: str, width: Any) -> None:
    if isinstance(width, int) and abs(width) > MAX_WIDTH:
        raise _refuse(f"{name} width {width:,} (at most {MAX_WIDTH:,})")


def _check_format(spec: Any) -> None:
    if not isinstance(spec, str):
        return
    for m in _FORMAT_FIELD.finditer(spec):
        for part in m.groups():
            if part == "*" or (part and int(part) > MAX_WIDTH):
                raise _refuse(f"the format field {m.group(0)!r} (widths at most {MAX_WIDTH:,})")


def _center(value: str, width: int = 80) -> str:
    _check_width("center", width)
    return do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _check_width("indent", width)
    if isinstance(width, str) and len(width) > MAX_WIDTH:
        raise _refuse(f"an indent of {len(width):,} characters (at most {MAX_WIDTH:,})")
    return do_indent(s, width, first, blank)


@pass_environment
def _wordwrap(environment: Any, s: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
    _check_width("wordwrap", width)
    return do_wordwrap(environment, s, width, *args, **kwargs)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_format(value)
    return do_format(value, *args, **kwargs)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if not isinstance(n, int) or not 0 <= n <= MAX_LIPSUM:
        raise _refuse(f"lipsum(n={n!r}) (at most {MAX_LIPSUM})")
    if not (isinstance(min, int) and isinstance(max, int)) or max > MAX_WIDTH:
        raise _refuse(f"lipsum(max={max!r}) (at most {MAX_WIDTH:,})")
    return generate_lorem_ipsum(n, html, min, max)


class CappedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*`, `**`, `%` and the width-taking filters capped."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.update(center=_center, indent=_indent, wordwrap=_wordwrap, format=_format)
        self.globals["lipsum"] = _lipsum

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        ints = isinstance(left, int) and isinstance(right, int)
        bits = right * math.log2(abs(left)) if ints and right > 0 and abs(left) > 1 else 0
        if operator == "**" and bits > MAX_POWER_BITS:
            raise _refuse(f"{left!r} ** {right!r} (at most {MAX_POWER_BITS:,} bits)")
        seq, n = (left, right) if isinstance(right, int) else (right, left)
        repeats = isinstance(seq, str | list | tuple) and isinstance(n, int) and n > 1
        if operator == "*" and repeats and _size(seq) * n > MAX_REPEAT:
            raise _refuse(
                f"a sequence repeated to {_size(seq) * n:,} items (at most {MAX_REPEAT:,})"
            )
        if operator == "%":
            _check_format(left)
        return super().call_binop(context, operator, left, right)
