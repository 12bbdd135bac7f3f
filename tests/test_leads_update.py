"""Leads after import: `leads import --update`, `leads set`, `leads tag`, and the journal rows
their changes leave (what `enrol_on = ["status:qualified", "tag:buyer"]` will read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from campaignctl.store import journal
from campaignctl.store.journal import Kind
from tests.support import open_store
from tests.support.rows import sql_dicts, sql_rows

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

FIRST = (
    "Email,First Name,Phone,Tags,Budget Max,City\n"
    "ana@x.com,Ana,+63 917 123 4567,Buyer;vip,5000000,Makati\n"
    "ben@x.com,Ben,,seller,,Taguig\n"
    ",Phil,+63 917 765 4321,,,\n"
)
SECOND = (
    "Email,First Name,Phone,Tags,Budget Max,City\n"
    "ANA@x.com,Anna,,hot,,Pasig\n"  # line 2: names, city, +hot; empty cells erase nothing
    "ben@x.com,Ben,,seller,,Taguig\n"  # line 3: changes nothing
    ",Philip,0917 765 4321,,,\n"  # line 4: no email: found by phone
    "cy@x.com,Cy,,,,\n"  # line 5: new
)


def lead_rows(project: Path) -> dict[str, dict[str, Any]]:
    rows = sql_dicts(project / "campaignctl.db", "SELECT * FROM lead ORDER BY id")
    out = {}
    for r in rows:
        d = dict(r)
        d["tags"], d["attrs"] = json.loads(d["tags"]), json.loads(d["attrs"])
        out[d["email"] or d["phone"]] = d
    return out


def journal_rows(project: Path, kind: str | None = None) -> list[dict[str, Any]]:
    rows = sql_dicts(project / "campaignctl.db", "SELECT * FROM journal ORDER BY id")
    for r in rows:
        r["detail"] = json.loads(r["detail"])
    return [r for r in rows if kind is None or r["kind"] == kind]


def summary(stdout: str) -> dict[str, int]:
    lines = [line for line in stdout.splitlines() if "┃" in line or "│" in line]
    names = [c.strip() for c in lines[0].strip("┃ ").split("┃")]
    values = [int(c.strip().replace(",", "")) for c in lines[1].strip("│ ").split("│")]
    return dict(zip(names, values, strict=True))


@pytest.fixture
def imported(cli, project: Path) -> Path:
    (project / "first.csv").write_text(FIRST)
    (project / "second.csv").write_text(SECOND)
    r = cli("-C", project, "leads", "import", "first.csv")
    assert r.exit_code == 0, r.output
    return project


# ---------------------------------------------------------------- leads import --update


def test_update_changes_fields_attributes_and_merges_tags(cli, imported):
    project = imported
    assert cli("-C", project, "leads", "set", "ana@x.com", "status=qualified").exit_code == 0
    assert cli("-C", project, "leads", "optout", "ana@x.com").exit_code == 0
    r = cli("-C", project, "leads", "import", "second.csv", "--update")
    assert r.exit_code == 0, r.output
    assert summary(r.stdout) == {
        "read": 4,
        "inserted": 1,
        "updated": 2,
        "unchanged": 1,
        "duplicates": 0,
        "fields dropped": 0,
        "rejected": 0,
    }
    assert "line 2: updated: first_name, city, +hot" in r.stdout
    assert "line 4: updated: first_name" in r.stdout
    leads = lead_rows(project)
    ana = leads["ana@x.com"]
    assert ana["first_name"] == "Anna"
    assert ana["phone"] == "+639171234567"  # an empty cell erases nothing
    assert ana["attrs"] == {"budget_max": 5000000, "city": "Pasig"}  # numbers stored as numbers
    assert ana["tags"] == ["buyer", "vip", "hot"]  # merged, lower-case
    assert ana["status"] == "qualified"  # never touched
    assert leads["+639177654321"]["first_name"] == "Philip"
    assert leads["cy@x.com"]["first_name"] == "Cy"
    assert sql_rows(project / "campaignctl.db", "SELECT channel FROM optout") == [("*",)]

    again = cli("-C", project, "leads", "import", "second.csv", "--update")
    assert summary(again.stdout)["unchanged"] == 4
    assert summary(again.stdout)["updated"] == 0


def test_without_update_an_existing_lead_stays_a_duplicate(cli, imported):
    r = cli("-C", imported, "leads", "import", "second.csv")
    assert r.exit_code == 0, r.output
    assert summary(r.stdout) == {
        "read": 4,
        "inserted": 1,
        "duplicates": 3,
        "fields dropped": 0,
        "rejected": 0,
    }
    assert lead_rows(imported)["ana@x.com"]["first_name"] == "Ana"


def test_update_tags_replace(cli, imported):
    (imported / "tags.csv").write_text("email,tags\nana@x.com,hot\nben@x.com,\n")
    r = cli("-C", imported, "leads", "import", "tags.csv", "--update", "--tags", "replace")
    assert r.exit_code == 0, r.output
    leads = lead_rows(imported)
    assert leads["ana@x.com"]["tags"] == ["hot"]
    assert leads["ben@x.com"]["tags"] == ["seller"]  # an empty tags cell leaves them
    tags = [(t["code"], t["detail"]["tag"]) for t in journal_rows(imported, "lead.tag")]
    assert tags == [("added", "hot"), ("removed", "buyer"), ("removed", "vip")]


def test_update_a_lead_named_twice_in_the_file_takes_the_first_row(cli, imported):
    (imported / "twice.csv").write_text(
        "email,first_name\nben@x.com,Benjamin\nBEN@x.com,Benny\nnew@x.com,N\nnew@x.com,M\n"
    )
    for _ in range(2):  # the same file again changes nothing
        r = cli("-C", imported, "leads", "import", "twice.csv", "--update")
        assert r.exit_code == 0, r.output
        assert lead_rows(imported)["ben@x.com"]["first_name"] == "Benjamin"
        assert lead_rows(imported)["new@x.com"]["first_name"] == "N"
    assert summary(r.stdout) | {"read": 0} == {
        "read": 0,
        "inserted": 0,
        "updated": 0,
        "unchanged": 2,
        "duplicates": 2,
        "fields dropped": 0,
        "rejected": 0,
    }


def test_update_phone_of_another_lead_is_left_out(cli, imported):
    (imported / "p.csv").write_text("email,phone\nben@x.com,+63 917 123 4567\n")
    r = cli("-C", imported, "leads", "import", "p.csv", "--update")
    assert r.exit_code == 0, r.output
    assert "line 2: phone +639171234567 already belongs to another lead; not updated" in r.stdout
    assert summary(r.stdout)["unchanged"] == 1
    assert lead_rows(imported)["ben@x.com"]["phone"] is None


def test_update_dry_run_writes_nothing(cli, imported):
    before = lead_rows(imported), journal_rows(imported)
    r = cli("-C", imported, "leads", "import", "second.csv", "--update", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "dry run: nothing written" in r.stdout
    assert summary(r.stdout)["updated"] == 2
    assert (lead_rows(imported), journal_rows(imported)) == before


def test_update_dry_run_without_a_database(cli, project):
    (project / "a.csv").write_text(FIRST)
    r = cli("-C", project, "leads", "import", "a.csv", "--update", "--dry-run")
    assert r.exit_code == 0, r.output
    assert summary(r.stdout)["inserted"] == 3
    assert not (project / "campaignctl.db").exists()


def test_update_without_an_identity_column_exits_2_naming_the_columns(cli, imported):
    (imported / "names.csv").write_text("First Name,City\nAna,Makati\n")
    r = cli("-C", imported, "leads", "import", "names.csv", "--update")
    assert r.exit_code == 2
    assert "no email or phone column; its columns: 'First Name', 'City'" in r.stderr
    assert "Traceback" not in r.output


def test_update_in_the_import_process_with_workers(cli, imported, monkeypatch):
    monkeypatch.setenv("CAMPAIGNCTL_IMPORT_WORKERS", "1")
    r = cli("-C", imported, "leads", "import", "second.csv", "--update")
    assert r.exit_code == 0, r.output
    assert summary(r.stdout)["updated"] == 2
    assert lead_rows(imported)["ana@x.com"]["first_name"] == "Anna"


def test_import_and_update_write_journal_rows_without_personal_data(cli, imported):
    first = journal_rows(imported)
    assert [(r["kind"], r["lead_id"], r["source"], r["detail"]) for r in first] == [
        (Kind.LEAD_IMPORTED, 1, "import", {"file": "first.csv", "line": 2}),
        (Kind.LEAD_IMPORTED, 2, "import", {"file": "first.csv", "line": 3}),
        (Kind.LEAD_IMPORTED, 3, "import", {"file": "first.csv", "line": 4}),
    ]
    cli("-C", imported, "leads", "import", "second.csv", "--update")
    # by line: a chunk's `lead.imported` rows are written before its updates' rows
    rows = sorted(journal_rows(imported)[3:], key=lambda r: (r["detail"]["line"], r["id"]))
    assert [(r["kind"], r["lead_id"], r["code"], r["detail"]) for r in rows] == [
        (
            Kind.LEAD_UPDATED,
            1,
            None,
            {"fields": ["first_name", "city"], "file": "second.csv", "line": 2},
        ),
        (Kind.LEAD_TAG, 1, "added", {"tag": "hot", "file": "second.csv", "line": 2}),
        (Kind.LEAD_UPDATED, 3, None, {"fields": ["first_name"], "file": "second.csv", "line": 4}),
        (Kind.LEAD_IMPORTED, 4, None, {"file": "second.csv", "line": 5}),
    ]
    assert {r["source"] for r in rows} == {"import"}
    text = json.dumps([r["detail"] for r in journal_rows(imported)])
    assert not any(v in text for v in ("Anna", "Philip", "Pasig", "ana@x.com", "+63"))


def test_tags_option_is_checked(cli, imported):
    r = cli("-C", imported, "leads", "import", "second.csv", "--update", "--tags", "swap")
    assert r.exit_code == 2
    assert "--tags" in r.stderr
    # without --update it would change nothing: refused, with the command that does it
    r = cli("-C", imported, "leads", "import", "second.csv", "--tags", "replace")
    assert r.exit_code == 2
    assert "--tags applies to leads already stored: it needs --update" in r.stderr
    assert "campaignctl leads import second.csv --update --tags replace" in r.stderr


# ---------------------------------------------------------------- leads set


def test_set_status_names_zone_tags_and_attributes(cli, imported):
    r = cli(
        "-C",
        imported,
        "leads",
        "set",
        "ANA@x.com",
        "status=qualified",
        "tags+=Hot",
        "tags-=VIP",
        "timezone=Asia/Manila",
        "last_name=Cruz",
        "budget_max=3500000",
        "city=",
    )
    assert r.exit_code == 0, r.output
    assert "ana@x.com: status new -> qualified; tag +hot; tag -vip;" in r.stdout
    ana = lead_rows(imported)["ana@x.com"]
    assert ana["status"] == "qualified"
    assert ana["tags"] == ["buyer", "hot"]
    assert ana["timezone"] == "Asia/Manila"
    assert ana["last_name"] == "Cruz"
    assert ana["attrs"] == {"budget_max": 3500000}
    rows = [r for r in journal_rows(imported) if r["source"] == "leads set"]
    assert [(r["kind"], r["code"], r["detail"]) for r in rows] == [
        (Kind.LEAD_UPDATED, None, {"fields": ["last_name", "timezone", "budget_max", "city"]}),
        (Kind.LEAD_STATUS, None, {"from": "new", "to": "qualified"}),
        (Kind.LEAD_TAG, "added", {"tag": "hot"}),
        (Kind.LEAD_TAG, "removed", {"tag": "vip"}),
    ]
    again = cli("-C", imported, "leads", "set", "ana@x.com", "status=qualified")
    assert again.exit_code == 0
    assert "nothing changed" in again.stdout


def test_set_tags_replace_phone_and_email(cli, imported):
    r = cli(
        "-C",
        imported,
        "leads",
        "set",
        "+63 917 765 4321",
        "tags=A,b",
        "email=Phil@X.com",
        "phone=0917 111 2222",
    )
    assert r.exit_code == 0, r.output
    phil = lead_rows(imported)["phil@x.com"]
    assert (phil["tags"], phil["phone"]) == (["a", "b"], "+639171112222")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nokey"], "'nokey': expected KEY=VALUE"),
        (["status*=x"], "unknown operator '*='"),
        (["status+=x"], "+= works on tags only"),
        (["Budget Max=1"], "'Budget Max' is not a field or attribute name"),
        (["id=3"], "'id' cannot be set"),
        (["status="], "status cannot be empty"),
        (["timezone=Mars/Base"], "'Mars/Base' is not an IANA time zone"),
        (["email=nobody"], "not a valid email"),
        (["phone=12"], "'12' is not a valid number"),
        (["email=ben@x.com"], "email ben@x.com already belongs to another lead"),
        (["email=", "phone="], "a lead keeps an email or a phone"),
    ],
)
def test_set_refuses_bad_assignments_and_changes_nothing(cli, imported, args, message):
    before = lead_rows(imported), journal_rows(imported)
    r = cli("-C", imported, "leads", "set", "ana@x.com", "status=qualified", *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert r.stderr.startswith("campaignctl: error: ")
    assert (lead_rows(imported), journal_rows(imported)) == before  # one transaction


def test_set_unknown_lead_exits_2_with_a_hint_and_creates_no_database(cli, project):
    r = cli("-C", project, "leads", "set", "nobody@example.com", "status=x")
    assert r.exit_code == 2
    assert "no lead with email or phone 'nobody@example.com'" in r.stderr
    assert "campaignctl leads list --where" in r.stderr
    assert not (project / "campaignctl.db").exists()


# ---------------------------------------------------------------- leads tag


def test_tag_matching_leads_case_insensitively(cli, imported):
    r = cli("-C", imported, "leads", "tag", "BUYER", "--where", "lead.city")
    assert r.exit_code == 0, r.output
    assert "added tag 'buyer' on 1 lead(s) (2 matched; 1 unchanged)" in r.stdout
    leads = lead_rows(imported)
    assert leads["ana@x.com"]["tags"] == ["buyer", "vip"]
    assert leads["ben@x.com"]["tags"] == ["seller", "buyer"]
    rows = journal_rows(imported, "lead.tag")
    assert [(r["lead_id"], r["code"], r["source"], r["detail"]) for r in rows] == [
        (2, "added", "leads tag", {"tag": "buyer"})
    ]

    dry = cli("-C", imported, "leads", "tag", "buyer", "--where", "true", "--remove", "--dry-run")
    assert "would remove tag 'buyer' on 2 lead(s) (3 matched; 1 unchanged)" in dry.stdout
    assert lead_rows(imported) == leads

    gone = cli("-C", imported, "leads", "tag", "buyer", "--where", "true", "--remove")
    assert "removed tag 'buyer' on 2 lead(s)" in gone.stdout
    assert lead_rows(imported)["ana@x.com"]["tags"] == ["vip"]
    assert [r["code"] for r in journal_rows(imported, "lead.tag")] == [
        "added",
        "removed",
        "removed",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["buyer", "--where", "status =="], "--where: invalid expression"),
        (["a,b", "--where", "true"], "a tag cannot contain"),
        (["  ", "--where", "true"], "the tag is empty"),
    ],
)
def test_tag_bad_input_exits_2(cli, imported, args, message):
    r = cli("-C", imported, "leads", "tag", *args)
    assert r.exit_code == 2
    assert message in r.stderr


# ---------------------------------------------------------------- the store's reader


def test_lead_events_after_an_id(cli, imported):
    cli("-C", imported, "leads", "set", "ben@x.com", "status=qualified", "tags+=buyer")
    store = open_store(imported)
    try:
        with store.read() as s:
            every = journal.lead_events(s)
            assert [e.kind for e in every] == [Kind.LEAD_IMPORTED] * 3 + [
                Kind.LEAD_STATUS,
                Kind.LEAD_TAG,
            ]
            triggers = journal.lead_events(s, every[2].id, [Kind.LEAD_STATUS, Kind.LEAD_TAG])
            assert [(e.lead_id, e.kind, e.detail) for e in triggers] == [
                (2, Kind.LEAD_STATUS, {"from": "new", "to": "qualified"}),
                (2, Kind.LEAD_TAG, {"tag": "buyer"}),
            ]
            assert journal.lead_events(s, triggers[-1].id) == []
            assert len(journal.lead_events(s, 0, limit=2)) == 2
    finally:
        store.close()


def test_update_rejects_file_says_updated_or_unchanged(cli, imported):
    (imported / "r.csv").write_text(
        "email,phone,first_name\nben@x.com,+63 917 123 4567,Benny\nana@x.com,+63 917 765 4321,\n"
    )
    r = cli("-C", imported, "leads", "import", "r.csv", "--update", "--rejects", "rej.csv")
    assert r.exit_code == 0, r.output
    lines = (imported / "rej.csv").read_text().splitlines()
    assert lines[1].endswith(
        ",2,updated; phone +639171234567 already belongs to another lead; not updated"
    )
    assert lines[2].endswith(
        ",3,unchanged; phone +639177654321 already belongs to another lead; not updated"
    )


def test_tag_and_list_leave_out_a_lead_the_expression_fails_on(cli, project: Path) -> None:
    # one "N/A" in a CSV column must not make tagging by that column impossible: the lead is
    # left out, as a campaign's audience leaves it out, and a warning names it
    (project / "bud.csv").write_text("email,budget\nc@example.com,5000000\nd@example.com,N/A\n")
    assert cli("-C", project, "leads", "import", "bud.csv").exit_code == 0
    r = cli("-C", project, "leads", "tag", "rich", "--where", "lead.budget >= 3000000")
    assert r.exit_code == 0, r.output
    assert "added tag 'rich' on 1 lead(s) (1 matched; 0 unchanged)." in r.stdout
    assert "warning: 1 lead(s) left out" in r.stderr
    assert "d@example.com" in r.stderr
    r = cli("-C", project, "leads", "list", "--where", "lead.budget >= 3000000", "--format", "json")
    assert r.exit_code == 0, r.output
    assert [x["email"] for x in json.loads(r.stdout)] == ["c@example.com"]
    assert "warning: 1 lead(s) left out" in r.stderr
