"""The dialect factory: one cached object per scheme, and an error listing the supported ones."""

from __future__ import annotations

import pytest

from campaignctl.errors import CampaignctlError
from campaignctl.store.dialect import dialect_for


def test_sqlite_urls_share_one_cached_dialect():
    assert dialect_for("sqlite:///a.db") is dialect_for("sqlite+pysqlite:///b.db")
    assert dialect_for("sqlite:///a.db").name == "sqlite"


def test_an_unknown_scheme_names_the_supported_ones():
    with pytest.raises(CampaignctlError) as info:
        dialect_for("mysql://u@h/d")
    assert "'mysql' databases are not supported" in info.value.message
    assert info.value.hint == "supported: postgres, postgresql, sqlite"
