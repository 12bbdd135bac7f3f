"""The few HTML pages the server shows, from `web/templates/`, autoescaped: nothing from a
request or the campaign file reaches a page unescaped."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


@cache
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("campaignctl.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        keep_trailing_newline=True,
    )


def page(template: str, **values: Any) -> str:
    """`template` (e.g. `page.html`, `unsubscribe.html`) rendered with `values`."""
    return _env().get_template(template).render(**values)


def message_page(title: str, message: str) -> str:
    """A page that only says something: errors, 404, 405."""
    return page("page.html", title=title, message=message)
