"""Nothing outside `campaignctl/store/` builds SQL: only the store imports a database library.

Every query lives in a named function of `campaignctl.store` (see docs/architecture.md when it
exists, and the store package's docstring); the rest of campaignctl calls those.
"""

from __future__ import annotations

import ast
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
