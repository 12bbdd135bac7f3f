"""The database fixtures: `db_url` runs a test on SQLite and on PostgreSQL.

`db_url` is parametrised over ["sqlite", "postgresql"] (the test ids say which). On SQLite it is
the default database of a project in `tmp_path` (`campaignctl.db` beside its campaigns.toml);
on PostgreSQL a fresh, empty database in the session's throwaway cluster (`pg_cluster`), also
put in `CAMPAIGNCTL_DATABASE`, so every project, `cli(...)` call and subprocess the test starts
uses it. A module runs all its tests on both with
`pytestmark = pytest.mark.usefixtures("db_url")`.

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
