"""What an import did: counts, notes about lines, warnings; filled by the importer, shown by
the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NOTES_KEPT = 1000


@dataclass(frozen=True)
class Note:
    """Something said about one CSV line: a dropped field, or why the row was rejected."""

    line: int
    message: str
    rejected: bool = False

    def __str__(self) -> str:
        return f"line {self.line}: {'rejected: ' if self.rejected else ''}{self.message}"


@dataclass
class ImportReport:
    """What an import did; `notes` keeps the first `NOTES_KEPT`, `notes_total` counts all."""

    path: Path
    dry_run: bool = False
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    fields_dropped: int = 0
    rejected: int = 0
    suppressed: int = 0  # inserted leads with an address on the suppression list
    notes: list[Note] = field(default_factory=list)
    notes_total: int = 0
    warnings: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    rejects_path: Path | None = None
    #: `--update`: rows that changed a stored lead, and rows that named one and changed nothing
    update: bool = False
    updated: int = 0
    unchanged: int = 0
    #: the first `NOTES_KEPT` updated rows, each with its line and what it changed
    changes: list[Note] = field(default_factory=list)

    def note(self, note: Note) -> None:
        self.notes_total += 1
        if len(self.notes) < NOTES_KEPT:
            self.notes.append(note)

    def change(self, note: Note) -> None:
        if len(self.changes) < NOTES_KEPT:
            self.changes.append(note)
