"""The throwaway PostgreSQL cluster the tests run on (tests/support/postgres.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.databases import DATABASE_ENV
from tests.support.postgres import Cluster, PostgresUnavailable


def test_cluster_is_unprivileged_on_loopback_with_trust(pg_cluster: Cluster) -> None:
    rows = pg_cluster.execute(
        "SELECT current_setting('listen_addresses'), current_setting('fsync'), "
        "current_setting('server_version_num')::int, inet_server_addr()::text"
    )
    assert rows == [("127.0.0.1", "off", rows[0][2], "127.0.0.1/32")]
    assert rows[0][2] >= 150000
    assert pg_cluster.data.stat().st_uid != 0  # the server never runs as root


def test_db_url_gives_each_test_a_fresh_database(db_url: str, db_kind: str, tmp_path: Path) -> None:
    if db_kind == "sqlite":
        assert db_url == f"sqlite:///{tmp_path / 'campaignctl.db'}"
        assert DATABASE_ENV not in os.environ
        return
    assert os.environ[DATABASE_ENV] == db_url
    import psycopg

    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_missing_binaries_fail_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNCTL_PG_BIN", "/nonexistent/bin")
    with pytest.raises(PostgresUnavailable, match=r"no initdb/pg_ctl .*apt-get install postgresql"):
        Cluster().start()
