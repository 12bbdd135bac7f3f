"""The database fixtures: `db_url` runs a test on SQLite and on PostgreSQL.

`db_url` is parametrised over ["sqlite", "postgresql"] (the test ids say which). On SQLite it is
the default database of a project in `tmp_path` (`campaignctl.db` beside its campaigns.toml);
on PostgreSQL a fresh, empty database in the session's throwaway cluster (`pg_cluster`), also
put in `CAMPAIGNCTL_DATABASE`, so every project, `cli(...)` call and subprocess the test starts
uses it. A module runs all its tests on both with
`pytestmark = pytest.mark.usefixtures("db_url")`; a test of that module about SQLite's file
itself (its bytes, its -wal, sqlite3 opened on it) says so with `@pytest.mark.sqlite_only`, and
its postgresql run is deselected.

The cluster starts once per session, only when a test asks for PostgreSQL; if it cannot start,
those tests FAIL with the reason (never skip): `.ci/deps` installs Debian's `postgresql`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import Cluster, PostgresUnavailable

#: The variable that points every command at a database (campaignctl.config.model).
DATABASE_ENV = "CAMPAIGNCTL_DATABASE"
DATABASES = ["sqlite", "postgresql"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: a db_url test about SQLite's file: no postgresql run"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        spec = getattr(item, "callspec", None)
        on_pg = spec is not None and spec.params.get("db_url") == "postgresql"
        (drop if on_pg and item.get_closest_marker("sqlite_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's throwaway PostgreSQL server (127.0.0.1, a free port, trust auth)."""
    cluster = Cluster()
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh empty PostgreSQL database for this test; its URL (dropped afterwards)."""
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's database URL, on SQLite then on PostgreSQL (see the module's docstring)."""
    if request.param == "sqlite":
        monkeypatch.delenv(DATABASE_ENV, raising=False)
        return f"sqlite:///{tmp_path / 'campaignctl.db'}"
    url: str = request.getfixturevalue("pg_url")
    monkeypatch.setenv(DATABASE_ENV, url)
    return url


@pytest.fixture
def db_kind(db_url: str) -> str:
    """`sqlite` or `postgresql`: the database this run of the test is on."""
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"
