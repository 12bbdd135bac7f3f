"""Where a key is written: key paths (`campaigns.welcome.steps[1].channel`) to line numbers.

tomllib gives no positions, so this follows the text's table headers and key lines.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(?:#.*)?$")
_KEYLINE = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _split_key(raw: str) -> list[str]:
    parts = re.findall(r"""\s*("[^"]*"|'[^']*'|[^.]+)\s*(?:\.|$)""", raw)
    return [p.strip().strip("\"'") for p in parts if p.strip()]


def locate_keys(text: str) -> dict[str, int]:
    """Map key paths (`campaigns.welcome.steps[1].channel`) to the 1-based line defining them.

    tomllib gives no positions, so this follows table headers and key lines; multi-line strings
    are skipped. Inline tables map to the line of their key.
    """
    lines: dict[str, int] = {}
    aot: dict[str, int] = {}  # raw dotted path of an array of tables -> current index
    current = ""
    in_ml: str | None = None
    for no, line in enumerate(text.splitlines(), start=1):
        if in_ml:
            if line.count(in_ml) % 2 == 1:
                in_ml = None
            continue
        m = _HEADER.match(line)
        if m:
            is_array = m.group(1) == "[["
            keys = _split_key(m.group(2))
            resolved, raw = [], []
            for i, k in enumerate(keys):
                raw.append(k)
                raw_key = ".".join(raw)
                resolved.append(k)
                last = i == len(keys) - 1
                if last and is_array:
                    aot[raw_key] = aot.get(raw_key, -1) + 1
                    for stale in [s for s in aot if s.startswith(raw_key + ".")]:
                        del aot[stale]
                if raw_key in aot:
                    resolved[-1] = f"{k}[{aot[raw_key]}]"
            current = ".".join(resolved)
            lines.setdefault(current, no)
            continue
        km = _KEYLINE.match(line)
        if km:
            key = ".".join(_split_key(km.group(1)))
            path = f"{current}.{key}" if current else key
            lines.setdefault(path, no)
            rest = line[km.end() :]
            for q in ('"""', "'''"):
                if rest.count(q) % 2 == 1:
                    in_ml = q
    return lines


def line_of(path: str, lines: dict[str, int]) -> int | None:
    """The line of `path`, else of its nearest written ancestor."""
    p = path
    while p:
        if p in lines:
            return lines[p]
        cut = max(p.rfind("."), p.rfind("["))
        p = p[:cut] if cut > 0 else ""
    return None


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
