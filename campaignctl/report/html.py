"""The HTML report: one self-contained file from `report.build`'s data.

The template (`report.html.j2`, beside this module) runs with Jinja's autoescape on, so every
name from the campaign file is escaped; the charts are inline SVG (`charts`), the style an
inline <style>: nothing is fetched from anywhere, and nothing comes from the clock.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from jinja2 import Environment, StrictUndefined

from campaignctl.report import COUNTS, LABELS, RATE_OF, charts


def percent(value: float | None) -> str:
    """0.1234 -> "12.3%"; None (nothing to divide by) -> "-"."""
    return "-" if value is None else f"{value * 100:.1f}%"


def render(report: dict[str, Any]) -> str:
    """The report document as HTML text."""
    env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["pct"] = percent
    env.filters["num"] = lambda n: f"{n:,}"
    template = env.from_string(
        files("campaignctl.report").joinpath("report.html.j2").read_text(encoding="utf-8")
    )
    return template.render(
        report=report,
        counts=COUNTS,
        labels=LABELS,
        rate_of=RATE_OF,
        charts=charts,
    )
