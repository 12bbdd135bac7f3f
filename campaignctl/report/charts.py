"""The report's charts as inline SVG: sends per day per channel (replies as a line), the funnel
of each step, and a step's variants side by side.

Every text that came from the campaign file or the database passes through `escape`; the
result is `Markup` for the template. Coordinates are rounded to one decimal, so the same data
draws the same bytes.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

#: Fill colours, in order: channels by name, and the funnel's stages.
PALETTE = ("#2f6db5", "#e08a1e", "#3b9a57", "#b8485a", "#7a5cb8", "#5a8f99", "#a3873c")
REPLIES = "#222222"
FUNNEL = (
    ("sent", "#2f6db5"),
    ("delivered", "#5a8f99"),
    ("replied", "#3b9a57"),
    ("clicked", "#7a5cb8"),
    ("opted_out", "#e08a1e"),
    ("bounced", "#b8485a"),
)
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _n(x: float) -> str:
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(label)}" {FONT}>'
        f"<title>{escape(label)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _ticks(top: int) -> int:
    """A round number at or above `top` for the y axis."""
    if top <= 0:
        return 1
    step = 1
    while step * 10 <= top:
        step *= 10
    for m in (1, 2, 3, 4, 5, 6, 8, 10):
        if m * step >= top:
            return m * step
    return 10 * step  # pragma: no cover - unreachable


def sends_per_day(days: list[dict[str, Any]]) -> Markup:
    """Stacked bars of each day's sends per channel, and the day's replies as a line."""
    width, height = 760, 260
    left, right, top, bottom = 56, 12, 28, 46
    channels = sorted({ch for d in days for ch in d["sends"]})
    colour = {ch: PALETTE[i % len(PALETTE)] for i, ch in enumerate(channels)}
    peak = max((max(sum(d["sends"].values()), d["replies"]) for d in days), default=0)
    ymax = _ticks(peak)
    plot_w, plot_h = width - left - right, height - top - bottom
    band = plot_w / max(len(days), 1)
    bar = min(max(band * 0.8, 0.5), 48)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / ymax

    body = [
        f'<line x1="{left}" y1="{_n(y(0))}" x2="{width - right}" y2="{_n(y(0))}" stroke="#999"/>',
        f'<line x1="{left}" y1="{_n(y(ymax))}" x2="{width - right}" y2="{_n(y(ymax))}" '
        'stroke="#ddd"/>',
        _text(left - 6, y(ymax) + 4, f"{ymax:,}", "end"),
        _text(left - 6, y(0) + 4, "0", "end"),
    ]
    labels = max(1, -(-len(days) // 8))
    points = []
    for i, d in enumerate(days):
        x = left + i * band + (band - bar) / 2
        base = 0
        for ch in channels:
            n = d["sends"].get(ch, 0)
            if n:
                body.append(
                    f'<rect class="bar" x="{_n(x)}" y="{_n(y(base + n))}" width="{_n(bar)}" '
                    f'height="{_n(y(base) - y(base + n))}" fill="{colour[ch]}">'
                    f"<title>{escape(d['day'])} {escape(ch)}: {n:,}</title></rect>"
                )
            base += n
        points.append(f"{_n(left + i * band + band / 2)},{_n(y(d['replies']))}")
        if i % labels == 0:
            body.append(_text(left + i * band + band / 2, height - bottom + 16, d["day"], "middle"))
    if points:
        body.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{REPLIES}" '
            'stroke-width="1.5"/>'
        )
    lx = left
    for ch in channels:
        body.append(f'<rect x="{lx}" y="8" width="12" height="12" fill="{colour[ch]}"/>')
        body.append(_text(lx + 16, 18, ch))
        lx += 28 + 7 * len(ch)
    body.append(f'<line x1="{lx}" y1="14" x2="{lx + 14}" y2="14" stroke="{REPLIES}"/>')
    body.append(_text(lx + 18, 18, "replies"))
    return _svg(width, height, "sends per day per channel, and replies", body)


def funnel(steps: list[dict[str, Any]]) -> Markup:
    """Per step, a bar for each stage (sent, delivered, replied, ...) against the most sent."""
    stages = [(k, c) for k, c in FUNNEL if any(k in st for st in steps)]
    width, row, gap = 760, 16, 14
    left, top = 180, 30
    height = top + len(steps) * (len(stages) * row + gap) + 4
    peak = max((st["sent"] for st in steps), default=0) or 1
    body = []
    lx = left
    for k, c in stages:
        body.append(f'<rect x="{lx}" y="8" width="12" height="12" fill="{c}"/>')
        label = k.replace("_", " ")
        body.append(_text(lx + 16, 18, label))
        lx += 28 + 7 * len(label)
    y = top
    for st in steps:
        body.append(_text(left - 8, y + 12, st["name"], "end", ' font-weight="bold"'))
        for k, c in stages:
            n = st.get(k, 0)
            w = (width - left - 200) * n / peak
            body.append(
                f'<rect class="bar" x="{left}" y="{y}" width="{_n(w)}" height="{row - 3}" '
                f'fill="{c}"><title>{escape(st["name"])} {k.replace("_", " ")}: {n:,}</title>'
                "</rect>"
            )
            label = f"{k.replace('_', ' ')} {n:,}"
            if k != "sent" and st["sent"]:
                label += f" ({n / st['sent'] * 100:.1f}% of sent)"
            body.append(_text(left + w + 4, y + 11, label))
            y += row
        y += gap
    return _svg(width, height, "funnel per step", body)


def variants(step: dict[str, Any]) -> Markup:
    """The step's variants side by side: each one's sends, and its reply and delivery rates."""
    vs = step["variants"]
    width, row = 760, 20
    left, top = 120, 30
    height = top + len(vs) * (2 * row + 10) + 4
    body = [
        '<rect x="120" y="8" width="12" height="12" fill="#3b9a57"/>',
        _text(136, 18, "reply rate"),
        '<rect x="230" y="8" width="12" height="12" fill="#5a8f99"/>',
        _text(246, 18, "delivery rate"),
    ]
    y = top
    for v in vs:
        body.append(_text(left - 8, y + 14, v["name"], "end", ' font-weight="bold"'))
        body.append(_text(left - 8, y + 28, f"{v['sent']:,} sent", "end"))
        for key, c in (("reply_rate", "#3b9a57"), ("delivery_rate", "#5a8f99")):
            value = v["rates"][key]["value"]
            w = (width - left - 110) * (value or 0)
            shown = "-" if value is None else f"{value * 100:.1f}%"
            body.append(
                f'<rect class="bar" x="{left}" y="{y}" width="{_n(w)}" height="{row - 4}" '
                f'fill="{c}"><title>{escape(v["name"])} {key.replace("_", " ")}: {shown}'
                "</title></rect>"
            )
            body.append(_text(left + w + 4, y + 12, shown))
            y += row
        y += 10
    return _svg(width, height, f"variants of {step['name']}", body)
