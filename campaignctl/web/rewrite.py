"""Tracked links and the open pixel, put into an email's body at send time.

With `[server] track_clicks`, every http(s) link of an email becomes a signed redirect through
`serve` (`Links.click`: signed over the message and the URL, so it is never an open redirect):
the `href` of each `<a>` in the HTML part, and each bare URL in the text part. Left as written:

- links to the server itself (`public_base_url`: the unsubscribe link, for one) and the
  lead's `sender.unsubscribe_url`;
- mailto:, tel: and any other scheme;
- an `<a>` with a `data-notrack` attribute, and a URL ending in `#notrack` (the marker is
  removed: the way to opt a link out of a Markdown or text template).

With `track_opens`, a 1x1 image (`Links.open_pixel`) is appended to the HTML part; an email
without one gets none.

The HTML is read with the stdlib's `html.parser`: only the `<a>` start tags whose link changes
are written again (their attributes re-escaped); every other byte stays as rendered.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable
from html.parser import HTMLParser

from campaignctl.web.links import Links

#: The fragment that keeps a link out of tracking; removed from what is sent.
NOTRACK = "#notrack"
#: The attribute that keeps an `<a>` out of tracking.
NOTRACK_ATTR = "data-notrack"

# a bare URL in text: up to whitespace or a character that never ends one in prose
_BARE_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?*_'\""
_CLOSERS = {")": "(", "]": "[", "}": "{"}


class Tracker:
    """Rewrites one message's bodies: its links signed for `message_id`."""

    def __init__(
        self,
        links: Links,
        message_id: int,
        *,
        clicks: bool,
        opens: bool,
        keep: tuple[str, ...] = (),
    ) -> None:
        self.links, self.message_id = links, message_id
        self.clicks, self.opens = clicks, opens
        #: URLs never tracked besides the server's own: the lead's unsubscribe URL.
        self.keep = frozenset(u for u in keep if u)

    def url(self, url: str) -> str:
        """What the message links to instead of `url` (itself when it is not tracked)."""
        if url.endswith(NOTRACK):
            return url[: -len(NOTRACK)]
        if not self.clicks or not self.trackable(url):
            return url
        return self.links.click(self.message_id, url)

    def trackable(self, url: str) -> bool:
        u = url.strip()
        if not re.match(r"https?://", u, re.IGNORECASE):
            return False
        own = self.links.base_url
        return u not in self.keep and not (u == own or u.startswith(own + "/"))

    def text(self, text: str) -> str:
        """The text part with its bare URLs tracked."""
        return _BARE_URL.sub(lambda m: _replace_bare(m.group(0), self.url), text)

    def html(self, html: str) -> str:
        """The HTML part with its `<a href>` links tracked and the pixel appended."""
        out = _rewrite_anchors(html, self.url) if self.clicks else _drop_markers(html)
        if self.opens:
            pixel = htmllib.escape(self.links.open_pixel(self.message_id), quote=True)
            out += (
                f'<img src="{pixel}" width="1" height="1" alt="" '
                'style="display:block;width:1px;height:1px;border:0">\n'
            )
        return out

    def bodies(self, text: str, html: str | None) -> tuple[str, str | None]:
        """(text, html) of the message as sent."""
        return self.text(text), None if html is None else self.html(html)


def _replace_bare(found: str, fix: Callable[[str], str]) -> str:
    """A URL found in text, without the punctuation that ends its sentence, replaced."""
    url, tail = found, ""
    while url:
        last = url[-1]
        if last in _TRAILING:
            pass
        elif last in _CLOSERS and url.count(_CLOSERS[last]) < url.count(last):
            pass  # "(see https://x.example/a)": the bracket is the sentence's
        else:
            break
        url, tail = url[:-1], last + tail
    if not re.match(r"https?://[^/?#]", url, re.IGNORECASE):
        return found
    return fix(url) + tail


class _Anchors(HTMLParser):
    """Finds each `<a>` start tag whose href changes: (offset, raw length, new tag)."""

    def __init__(self, fix: Callable[[str], str]) -> None:
        super().__init__(convert_charrefs=True)
        self.fix = fix
        self.changes: list[tuple[tuple[int, int], str, str]] = []

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> None:
        if tag != "a":
            return
        names = [k for k, _ in attrs]
        if NOTRACK_ATTR in names or "href" not in names:
            return
        new_attrs = []
        changed = False
        for k, v in attrs:
            if k == "href" and v is not None and not changed:
                fixed = self.fix(v.strip())
                changed = fixed != v.strip()
                v = fixed
            new_attrs.append((k, v))
        raw = self.get_starttag_text()
        if not changed or raw is None:
            return
        parts = [f"<{tag}"]
        for k, v in new_attrs:
            parts.append(f" {k}" if v is None else f' {k}="{htmllib.escape(v, quote=True)}"')
        parts.append(" />" if closed else ">")
        self.changes.append((self.getpos(), raw, "".join(parts)))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, True)


def _rewrite_anchors(html: str, fix: Callable[[str], str]) -> str:
    parser = _Anchors(fix)
    parser.feed(html)
    parser.close()
    if not parser.changes:
        return html
    # the parser counts lines by "\n" and columns from each line's start
    starts = [0]
    at = html.find("\n")
    while at >= 0:
        starts.append(at + 1)
        at = html.find("\n", at + 1)
    out, done = [], 0
    for (line, col), raw, new in parser.changes:
        at = starts[line - 1] + col
        if html[at : at + len(raw)] != raw:  # never expected: leave the tag as it was
            continue
        out.append(html[done:at])
        out.append(new)
        done = at + len(raw)
    out.append(html[done:])
    return "".join(out)


def _drop_markers(html: str) -> str:
    """Without click tracking, `#notrack` markers are still removed from hrefs."""
    return _rewrite_anchors(html, lambda u: u[: -len(NOTRACK)] if u.endswith(NOTRACK) else u)
