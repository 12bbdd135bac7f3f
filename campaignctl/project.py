"""`init`: a new project folder from the files in `campaignctl/scaffold/`."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from campaignctl.errors import UsageError

#: Files written by `init`, relative to the target folder (and to `scaffold/`).
SCAFFOLD_FILES = ("campaigns.toml", "templates/welcome.md.j2", "leads.csv")


def _source(name: str) -> Traversable:
    node = files("campaignctl").joinpath("scaffold")
    for part in name.split("/"):
        node = node.joinpath(part)
    return node


def init_project(target: Path) -> list[Path]:
    """Write a campaign file, a template and a sample CSV into `target`; returns the paths.

    Never overwrites: if any of the files exists, raises UsageError and writes nothing.
    """
    paths = [target / name for name in SCAFFOLD_FILES]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise UsageError(
            f"{existing[0]}: already exists; init never overwrites",
            "edit the existing campaign file, or run `campaignctl init NEW_DIR`",
        )
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target}: is not a folder")
    for path, name in zip(paths, SCAFFOLD_FILES, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        # "x" mode: a file that appeared since the check above is still never overwritten
        with path.open("x", encoding="utf-8") as out:
            out.write(_source(name).read_text(encoding="utf-8"))
    return paths
