"""The arrows that must never exist (docs/architecture.md), checked on the source with `ast`.

- Nothing outside `campaignctl/store/` builds SQL: only the store imports a database library.
  Every query lives in a named function of `campaignctl.store`; the rest of campaignctl calls
  those.
- The engine knows no screen: no typer, click or rich in the engine, planner, store, channels,
  pacing or render.
- Channels never touch the store.
- Pacing stays pure: it imports no store, channel or engine, and reads no clock.
- The leads import process stays lean: importing `campaignctl.leads` loads no SQL or CLI library.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

PACKAGE = REPO / "campaignctl"
STORE = PACKAGE / "store"
DATABASE_LIBRARIES = {"sqlalchemy", "sqlmodel", "sqlite3"}


def _database_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for each import of a database library in `path`, at any depth (inside
    functions and `if TYPE_CHECKING:` blocks too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".", 1)[0] in DATABASE_LIBRARIES]
    return found


def test_only_the_store_imports_a_database_library():
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if STORE not in path.parents
        for line, name in _database_imports(path)
    ]
    assert offenders == [], "SQL belongs in campaignctl/store/: " + "; ".join(offenders)


def test_the_check_sees_imports_anywhere_in_a_module(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import os\n"
        "def f():\n"
        "    from sqlalchemy import select\n"
        "    import sqlite3 as db\n"
        "if True:\n"
        "    import sqlmodel.sql\n",
        encoding="utf-8",
    )
    assert _database_imports(module) == [(3, "sqlalchemy"), (4, "sqlite3"), (6, "sqlmodel.sql")]


# ---------------------------------------------------------------- the other arrows


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for each absolute import in `path`, at any depth; `from a import b` gives
    `a.b` (it may name a module), `import a.b` gives `a.b`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _under(module: str, prefixes: set[str]) -> str | None:
    """The prefix `module` is or lies inside (`sqlalchemy.orm` is inside `sqlalchemy`)."""
    return next((p for p in sorted(prefixes) if module == p or module.startswith(p + ".")), None)


def _sources(*parts: str) -> list[Path]:
    """The files of each part: `engine` is `engine.py` or the `engine/` package."""
    out: list[Path] = []
    for part in parts:
        out += [PACKAGE / f"{part}.py"] if (PACKAGE / f"{part}.py").exists() else []
        out += sorted((PACKAGE / part).rglob("*.py")) if (PACKAGE / part).is_dir() else []
    assert out, f"no sources for {parts}"
    return out


def _offenders(paths: list[Path], forbidden: set[str]) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in paths
        for line, name in _imports(path)
        if _under(name, forbidden)
    ]


SCREEN = {"typer", "click", "rich"}


def test_the_engine_knows_no_screen():
    """Providers declare `campaignctl auth NAME` as data (`registry.Auth`): the CLI builds it."""
    offenders = _offenders(
        _sources("engine", "planner", "store", "channels", "pacing", "render", "web", "hooks"),
        SCREEN,
    )
    assert offenders == [], "terminal output belongs in campaignctl/cli/: " + "; ".join(offenders)


def test_channels_never_touch_the_store():
    offenders = _offenders(_sources("channels"), {"campaignctl.store", *DATABASE_LIBRARIES})
    assert offenders == [], "a channel sends and receives; the engine records: " + "; ".join(
        offenders
    )


#: Methods that read the wall clock: `datetime.now()`, `date.today()`; the `time` module is not
#: imported at all (`time.time()`, `time.monotonic()`).
CLOCK_METHODS = {"now", "utcnow", "today"}


def _clock_reads(path: Path) -> list[tuple[int, str]]:
    """(line, method) for each call of a clock-reading method in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_METHODS
    ]


def test_pacing_stays_pure():
    (pacing,) = _sources("pacing")
    offenders = _offenders(
        [pacing], {"campaignctl.store", "campaignctl.channels", "campaignctl.engine", "time"}
    )
    offenders += [f"pacing.py:{line} calls {name}()" for line, name in _clock_reads(pacing)]
    assert offenders == [], "pacing is a pure function of `now`: " + "; ".join(offenders)


def test_the_command_modules_keep_their_annotations_evaluated():
    """typer reads each command's annotations at every start: as strings (PEP 563), each is
    compiled and evaluated again, a third of `status`'s start-up (see `campaignctl.cli`)."""
    offenders = [
        str(path.relative_to(REPO))
        for path in _sources("cli")
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names)
    ]
    assert offenders == []


def test_the_leads_import_process_stays_lean():
    code = (
        "import sys, campaignctl.leads\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sqlalchemy', 'sqlmodel', 'typer', 'click', 'rich'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def test_the_arrow_checks_see_what_they_look_for(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from campaignctl import store\n"
        "import rich.console\n"
        "def f():\n"
        "    from datetime import datetime\n"
        "    import time\n"
        "    return datetime.now(), date.today(), time.monotonic()\n",
        encoding="utf-8",
    )
    imports = [name for _, name in _imports(module)]
    assert imports == ["campaignctl.store", "rich.console", "datetime.datetime", "time"]
    forbidden = {"campaignctl.store", "rich", "time"}
    assert [name for name in imports if _under(name, forbidden)] == [
        "campaignctl.store",
        "rich.console",
        "time",
    ]
    assert _clock_reads(module) == [(6, "now"), (6, "today")]
