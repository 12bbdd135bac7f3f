"""`leads import` in its own process (`_ImportJob.run_elsewhere`): results, dry run, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaignctl.leads import LeadsInputError
from tests.test_leads import db_rows, run_import, write_csv


def test_import_process_gives_the_same_result_as_this_one(tmp_path: Path) -> None:
    rows = "".join(f"p{i}@x.com,(415) 555-{i % 10000:04d},Tz/Nowhere\n" for i in range(3000))
    path = write_csv(tmp_path / "l.csv", "email,phone,timezone\n" + rows + "P1@x.com,,\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    here = run_import(tmp_path / "a", path, workers=0)
    there = run_import(tmp_path / "b", path, workers=1)
    assert (there.read, there.inserted, there.duplicates, there.fields_dropped) == (
        3001,
        3000,
        1,
        3000,
    )
    assert [str(n) for n in there.notes] == [str(n) for n in here.notes]
    assert db_rows(tmp_path / "b") == db_rows(tmp_path / "a")


def test_import_process_dry_run_creates_no_database(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "l.csv", "email\na@x.com\nA@x.com\nb@x.com\n")
    report = run_import(tmp_path, path, workers=1, dry_run=True)
    assert (report.inserted, report.duplicates) == (2, 1)
    assert not (tmp_path / "leads.db").exists()


def test_import_process_errors_come_back_as_raised(tmp_path: Path) -> None:
    big = "x" * 200_000  # over csv's field limit: found by a worker, raised in this process
    path = write_csv(tmp_path / "l.csv", f'email,notes\na@x.com,"{big}"\n')
    rejects = tmp_path / "missing" / "r.csv"
    with pytest.raises(LeadsInputError, match="unreadable CSV: field larger"):
        run_import(tmp_path, path, workers=1)
    with pytest.raises(LeadsInputError, match="cannot write") as err:
        run_import(
            tmp_path, write_csv(tmp_path / "m.csv", "email\na@x.com\n"), workers=1, rejects=rejects
        )
    assert err.value.message.startswith("--rejects")


def test_json_helpers_write_what_the_json_encoder_writes() -> None:
    import json

    from campaignctl.leads import json_string_object, json_strings

    texts = ["", "plain", 'quo"te', "back\\slash", "José Nuñez", "tab\tnew\nline", "\x00\x1f", "😀"]
    compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    assert json_strings(texts) == compact(texts)
    assert json_strings([]) == "[]"
    pairs = {t or "empty": t for t in texts}
    assert json_string_object(pairs) == compact(pairs)
    assert json_string_object({}) == "{}"
    assert json.loads(json_string_object(pairs)) == pairs
