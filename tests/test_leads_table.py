"""`leads list` as a table streams a long list in pieces sized by its first rows (issue 15:
flat memory at 1,000,000 leads), drawn as one table; a short list is one table sized to it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import campaignctl.cli.streamed as streamed
from tests.support.project import REPO


def _example(cli, tmp_path: Path) -> list[str]:
    shutil.copy(REPO / "campaigns.toml", tmp_path / "campaigns.toml")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    r = cli("-C", tmp_path, "leads", "import", "examples/sunrise/leads.csv")
    assert r.exit_code == 0, r.output
    r = cli("-C", tmp_path, "leads", "list", "--format", "csv")
    return [line.split(",")[1] for line in r.stdout.splitlines()[1:]]  # the phones


def test_a_long_list_is_one_table_drawn_in_pieces(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones = _example(cli, tmp_path)
    assert len(phones) > 12
    monkeypatch.setattr(streamed, "BATCH", 4)
    r = cli("-C", tmp_path, "leads", "list")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[-1].strip() == f"{len(phones)} lead(s)"
    table = lines[:-1]
    # one top edge, one header, one bottom edge; every line as wide as the first
    assert [line[0] for line in table].count("┏") == 1
    assert sum("┃ email" in line for line in table) == 1
    assert [line[0] for line in table].count("└") == 1
    assert table[-1].startswith("└")
    assert {len(line) for line in table} == {len(table[0])}
    assert all(line.startswith("│") for line in table[3:-1])
    # every lead is there, in order
    cells = [line.split("│")[2].strip() for line in table[3:-1]]
    assert [c for c in cells if c] == [p for p in phones if p]


def test_a_short_list_is_sized_to_its_rows(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones = _example(cli, tmp_path)
    monkeypatch.setattr(streamed, "BATCH", len(phones))
    whole = cli("-C", tmp_path, "leads", "list").stdout
    monkeypatch.setattr(streamed, "BATCH", 1000)
    assert cli("-C", tmp_path, "leads", "list").stdout == whole
    assert "…" not in whole  # nothing cut: the columns fit every row
