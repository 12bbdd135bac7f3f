"""A table drawn as its rows come, in flat memory: `leads list` and `send --dry-run --show`.

Up to `BATCH` rows, it is one Rich table laid out to fit them. A longer one is still one table,
but Rich lays out only its frame, in the column widths the first `BATCH` rows need (fitted to
the terminal), and every row is written as it comes, padded to those widths (Rich would take a
millisecond a row, and hold every row). A longer cell in a `fold` column goes on more lines;
another is cut with an ellipsis.
"""

import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

#: Rows a table holds before it streams.
BATCH = 1000
#: Line breaks and other control characters, shown as spaces in a streamed table's cells.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class StreamedTable:
    """`add` each row (its cells as text), then `close` with the caption."""

    def __init__(
        self,
        console: "Console",
        columns: Sequence[str],
        *,
        fold: Collection[str] = (),
        title: str | None = None,
    ) -> None:
        self.console = console
        self.columns = tuple(columns)
        self.fold = [c in fold for c in self.columns]
        self.title = title
        self.batch = BATCH
        self.count = 0
        self._rows: list[Sequence[str]] = []  # until it streams
        self._widths: list[int] | None = None
        self._spans: list[int] = []

    def add(self, row: Sequence[str]) -> None:
        self.count += 1
        if self._widths is not None:
            self.console.file.write(_row(row, self._spans, self.fold))
            return
        self._rows.append(row)
        if len(self._rows) > self.batch:
            self._stream()

    def close(self, caption: str | None = None) -> None:
        """Draw what is held (the whole table when it never streamed), then the bottom edge
        and `caption`."""
        if self._widths is None:
            self.console.print(self._table(self._rows, caption=caption, title=self.title))
            self._rows = []
            return
        end = self._table([], caption=caption, widths=self._widths, header=False)
        self.console.file.write("".join(_rendered(self.console, end)[1:]))  # past the top edge

    def _stream(self) -> None:
        """Draw the frame in the widths the first rows need, then those rows."""
        first = self._rows[: self.batch]
        self._widths = widths = [
            max(len(c), *(len(r[i]) for r in first)) for i, c in enumerate(self.columns)
        ]
        head = _rendered(self.console, self._table([], widths=widths, title=self.title))
        top = next(line for line in map(_plain, head) if line.startswith("┏"))
        self._spans = [len(edge) for edge in top.rstrip()[1:-1].split("┳")]
        out = self.console.file
        out.write("".join(head[:-1]))  # all but the bottom edge
        out.write("".join(_row(r, self._spans, self.fold) for r in self._rows))
        self._rows = []

    def _table(
        self,
        rows: list[Sequence[str]],
        *,
        caption: str | None = None,
        widths: list[int] | None = None,
        header: bool = True,
        title: str | None = None,
    ) -> Any:
        """The rows as a Rich table; `widths`: each column's, fixed (the frame of a long one)."""
        from rich.table import Table

        table = Table(title=title, caption=caption, show_header=header)
        # Fold rather than cut: a table piped to a file is 80 columns wide, and an address cut
        # with an ellipsis is useless. Addresses and phones keep their full width when they can.
        for i, (column, folds) in enumerate(zip(self.columns, self.fold, strict=True)):
            if widths is not None:
                table.add_column(column, width=widths[i], no_wrap=True)
            elif folds:
                widest = max((len(r[i]) for r in rows), default=0)
                table.add_column(column, overflow="fold", min_width=min(widest, 32))
            else:
                table.add_column(column)
        for r in rows:
            table.add_row(*r)
        return table


def _row(row: Sequence[str], spans: list[int], fold: list[bool]) -> str:
    """One row as the lines of a table: each cell padded to its column's span (a space either
    side when it has room, as Rich pads), folded onto more lines (`fold`) or cut with an
    ellipsis when longer."""
    from rich.cells import cell_len, chop_cells, set_cell_size

    cells: list[list[str]] = []
    pads: list[str] = []
    for value, span, folds in zip(row, spans, fold, strict=True):
        pad = " " if span >= 3 else ""
        width = span - 2 * len(pad)
        pads.append(pad)
        text = _CONTROL.sub(" ", value)
        if cell_len(text) <= width:
            cells.append([text])
        elif folds and width > 0:
            cells.append(chop_cells(text, width))
        else:
            cells.append([set_cell_size(text, width - 1) + "…" if width > 0 else ""])
    lines = []
    for i in range(max(len(c) for c in cells)):
        parts = [
            pad + set_cell_size(c[i] if i < len(c) else "", span - 2 * len(pad)) + pad
            for c, span, pad in zip(cells, spans, pads, strict=True)
        ]
        lines.append("│" + "│".join(parts) + "│\n")
    return "".join(lines)


def _rendered(console: "Console", table: Any) -> list[str]:
    """The lines Rich prints for `table` on `console` (its styles included)."""
    with console.capture() as captured:
        console.print(table)
    lines: list[str] = captured.get().splitlines(keepends=True)
    return lines


def _plain(line: str) -> str:
    from rich.text import Text

    return Text.from_ansi(line).plain
