"""The CSV import core: mapping, normalisation, identity rules, reports, encodings.

Expectations on the public data are computed here with phonenumbers, email-validator and
pycountry directly, never copied from the import's own output.
"""

from __future__ import annotations

import contextlib
import csv
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
import pycountry
import pytest
from email_validator import EmailNotValidError, validate_email

from campaignctl.config import Config, Settings
from campaignctl.leads import (
    LeadsInputError,
    import_leads,
    inspect_csv,
    list_leads,
    normalise_email,
    sample_leads_from_csv,
    snake_case,
)
from campaignctl.store import Lead, OptOut, Store
from tests.support import PUBLIC_DATA
from tests.support.rows import sql_rows

E164 = re.compile(r"\+[1-9]\d{1,14}")
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")


def make_cfg(tmp_path: Path, region: str | None = "US") -> Config:
    cfg = Config(settings=Settings(database="leads.db", default_region=region))
    cfg._path = tmp_path / "campaigns.toml"
    return cfg


def run_import(tmp_path: Path, csv_path: Path, region: str | None = "US", **kw):
    cfg = make_cfg(tmp_path, region)
    return import_leads(csv_path, cfg, lambda: Store.for_config(cfg), now=NOW, **kw)


def db_rows(
    tmp_path: Path, sql: str = "SELECT email, phone FROM lead ORDER BY id"
) -> list[tuple[Any, ...]]:
    return sql_rows(tmp_path / "leads.db", sql)


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------- independent expectations


def expected_region(country: str, default: str) -> str:
    try:
        code = pycountry.countries.lookup(country).alpha_2
    except LookupError:
        return default
    return code if code in phonenumbers.SUPPORTED_REGIONS else default


def expected_contacts(
    path: Path, default: str = "US"
) -> tuple[set[str], set[str], list[tuple[int, str]]]:
    """Distinct leads (email, else phone) and the phones they keep, by the documented rules."""
    emails: set[str] = set()
    phones: set[str] = set()
    extensions = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            line = reader.line_num
            email = None
            with contextlib.suppress(EmailNotValidError):
                email = validate_email(row["Email"], check_deliverability=False).normalized.lower()
            phone = None
            try:
                number = phonenumbers.parse(
                    row["Phone 1"], expected_region(row["Country"], default)
                )
                if phonenumbers.is_valid_number(number):
                    phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    if number.extension:
                        extensions.append((line, number.extension))
            except phonenumbers.NumberParseException:
                pass
            if email is not None:
                if email in emails:
                    continue
                emails.add(email)
                if phone is not None and phone not in phones:
                    phones.add(phone)
            elif phone is not None:
                phones.add(phone)
    return emails, phones, extensions


# ---------------------------------------------------------------- public data


@pytest.mark.parametrize("name", ["customers-100.csv", "customers-10000.csv"])
def test_public_data_import(tmp_path, name):
    path = PUBLIC_DATA / name
    emails, phones, _ = expected_contacts(path)
    report = run_import(tmp_path, path)
    rows = db_rows(tmp_path)
    assert all(phone is None or E164.fullmatch(phone) for _, phone in rows)
    assert (
        report.inserted
        == len(rows)
        == len({e for e, _ in rows if e} | {p for e, p in rows if not e})
    )
    assert {e for e, _ in rows if e} == emails
    assert {p for _, p in rows if p} == phones
    assert report.read == len(path.read_text().splitlines()) - 1
    assert report.read == report.inserted + report.duplicates + report.rejected

    again = run_import(tmp_path, path)
    assert again.inserted == 0
    assert again.duplicates == report.inserted
    assert db_rows(tmp_path) == rows


def test_public_data_extension_dropped_and_reported(tmp_path):
    path = PUBLIC_DATA / "customers-10000.csv"
    _, _, extensions = expected_contacts(path)
    assert extensions, "the file is known to hold valid numbers with extensions"
    report = run_import(tmp_path, path)
    by_line = {n.line: n.message for n in report.notes}
    line, ext = extensions[0]
    assert f"extension x{ext} dropped" in by_line[line]


def test_public_data_attributes_in_snake_case(tmp_path):
    report = run_import(tmp_path, PUBLIC_DATA / "customers-100.csv")
    assert report.columns == {
        "email": "Email",
        "phone": "Phone 1",
        "first_name": "First Name",
        "last_name": "Last Name",
        "country": "Country",
    }
    assert "phone_2" in report.attributes
    assert "subscription_date" in report.attributes
    store = Store.for_config(make_cfg(tmp_path))
    lead = list_leads(store, limit=1)[0]
    assert lead["first_name"] == "Sheryl"
    assert lead["customer_id"] == "DD37Cf93aecA6Dc"
    assert lead["phone_2"] == "397.884.0519x718"
    assert lead["country"] == "Chile"
    assert lead["status"] == "new"


@pytest.mark.sqlite_only  # two databases side by side
def test_workers_give_the_same_result_as_one_process(tmp_path):
    path = PUBLIC_DATA / "customers-10000.csv"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = run_import(tmp_path / "a", path, workers=0)
    two = run_import(tmp_path / "b", path, workers=2)
    assert (one.read, one.inserted, one.duplicates, one.fields_dropped, one.rejected) == (
        two.read,
        two.inserted,
        two.duplicates,
        two.fields_dropped,
        two.rejected,
    )
    assert [str(n) for n in one.notes] == [str(n) for n in two.notes]
    assert db_rows(tmp_path / "a") == db_rows(tmp_path / "b")


# ---------------------------------------------------------------- rules on small files


def test_identity_duplicates_and_taken_phone(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        "Email,Phone,First Name\n"
        "ana@x.com,(415) 555-0132,Ana\n"  # line 2
        " ANA@X.COM ,,Ana again\n"  # 3: same email -> duplicate
        "ben@x.com,+1 415 555 0132,Ben\n"  # 4: phone taken by ana -> kept without phone
        ",415.555.0132,\n"  # 5: phone only, belongs to ana -> duplicate
        ",+1 212 555 0199,\n"  # 6: phone-only lead
        "not-an-email,nope,\n",  # 7: rejected
    )
    report = run_import(tmp_path, path)
    assert (report.read, report.inserted, report.duplicates, report.rejected) == (6, 3, 2, 1)
    assert db_rows(tmp_path) == [
        ("ana@x.com", "+14155550132"),
        ("ben@x.com", None),
        (None, "+12125550199"),
    ]
    notes = {n.line: n for n in report.notes}
    assert "already belongs to another lead" in notes[4].message
    assert notes[7].rejected
    assert "email 'not-an-email'" in notes[7].message
    assert report.fields_dropped == 1


def test_bad_phone_with_good_email_is_kept_and_reported(tmp_path):
    path = write_csv(tmp_path / "l.csv", "email,phone\nana@x.com,-1199\n")
    report = run_import(tmp_path, path)
    assert db_rows(tmp_path) == [("ana@x.com", None)]
    assert report.fields_dropped == 1
    assert str(report.notes[0]).startswith("line 2: phone '-1199' is not a")


def test_lines_are_physical_lines(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        'email,notes\n\na@x.com,"two\nlines"\n,\nbad@,x\n',
    )
    report = run_import(tmp_path, path)
    assert [n.line for n in report.notes] == [6]
    assert report.read == 2


def test_country_names_choose_the_region(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        "email,phone,country\n"
        "a@x.com,268 464 1234,Antigua and Barbuda\n"
        "b@x.com,0917 123 4567,Philippines\n"
        "c@x.com,0917 765 4321,PH\n"
        "d@x.com,(415) 555-0134,Atlantis\n",  # unknown country: default region
    )
    run_import(tmp_path, path, region="US")
    assert [p for _, p in db_rows(tmp_path)] == [
        "+12684641234",
        "+639171234567",
        "+639177654321",
        "+14155550134",
    ]


def test_no_default_region_needs_a_country_code(tmp_path):
    path = write_csv(tmp_path / "l.csv", "phone\n+63 917 123 4567\n(415) 555-0132\n")
    report = run_import(tmp_path, path, region=None)
    assert db_rows(tmp_path) == [(None, "+639171234567")]
    assert report.notes[0].rejected
    assert "no default region" in report.notes[0].message


def test_map_tags_timezone_and_attributes(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        "Correo;Movil;Labels;Time Zone;Subscription Date;Phone 2\n"
        "ana@x.com;+63 917 123 4567;buyer, vip;Asia/Manila;2024-01-02;\n"
        "ben@x.com;;;Mars/Olympus;;+1 415 555 0100\n",
    )
    report = run_import(
        tmp_path, path, mapping=["email=Correo", "phone=movil"], tags=["hot", "buyer"]
    )
    assert report.columns == {
        "email": "Correo",
        "phone": "Movil",
        "timezone": "Time Zone",
        "tags": "Labels",
    }
    store = Store.for_config(make_cfg(tmp_path))
    ana, ben = list_leads(store)
    assert ana["tags"] == ["buyer", "vip", "hot"]
    assert ben["tags"] == ["hot", "buyer"]
    assert ana["timezone"] == "Asia/Manila"
    assert ben["timezone"] is None
    assert ana["subscription_date"] == "2024-01-02"
    assert "subscription_date" not in ben
    assert ben["phone_2"] == "+1 415 555 0100"
    assert [str(n) for n in report.notes] == [
        "line 3: timezone 'Mars/Olympus' is not an IANA time zone; dropped"
    ]


def test_unknown_map_field_and_column(tmp_path):
    path = write_csv(tmp_path / "l.csv", "Correo\nana@x.com\n")
    with pytest.raises(LeadsInputError, match="unknown field 'mail'"):
        run_import(tmp_path, path, mapping=["mail=Correo"])
    with pytest.raises(LeadsInputError, match="has no column 'Mail'; its columns: 'Correo'"):
        run_import(tmp_path, path, mapping=["email=Mail"])
    assert not (tmp_path / "leads.db").exists()


def test_dry_run_writes_nothing(tmp_path):
    path = PUBLIC_DATA / "customers-100.csv"
    dry = run_import(tmp_path, path, dry_run=True)
    assert not (tmp_path / "leads.db").exists()
    real = run_import(tmp_path, path)
    assert (dry.inserted, dry.duplicates, dry.rejected) == (real.inserted, 0, real.rejected)
    before = db_rows(tmp_path)
    again = run_import(tmp_path, path, dry_run=True)
    assert again.inserted == 0
    assert again.duplicates == real.inserted
    assert db_rows(tmp_path) == before


def test_rejects_file(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        "email,phone,city\n"
        "ana@x.com,(415) 555-0132 x7,Oakland\n"
        ",12,Reno\n"
        "ben@x.com,+14155550132,\n",
    )
    report = run_import(tmp_path, path, rejects=tmp_path / "rejects.csv")
    assert report.rejected == 1
    with open(tmp_path / "rejects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["line"], r["city"]) for r in rows] == [("2", "Oakland"), ("3", "Reno"), ("4", "")]
    assert rows[0]["reason"] == "imported; phone '(415) 555-0132 x7': extension x7 dropped"
    assert rows[1]["reason"].startswith("phone '12' is not a")
    assert rows[2]["reason"].endswith("already belongs to another lead; dropped")
    assert rows[2]["phone"] == "+14155550132"


# ---------------------------------------------------------------- encodings and delimiters


def test_utf8_bom_and_semicolons(tmp_path):
    path = write_csv(tmp_path / "l.csv", "Email;First Name\nzoe@x.com;Zoë\n", "utf-8-sig")
    fmt = inspect_csv(path)
    assert (fmt.encoding, fmt.delimiter, fmt.warning) == ("utf-8-sig", ";", None)
    report = run_import(tmp_path, path)
    assert report.columns == {"email": "Email", "first_name": "First Name"}
    assert db_rows(tmp_path, "SELECT email, first_name FROM lead") == [("zoe@x.com", "Zoë")]


def test_latin1_is_read_with_a_warning(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        "email,first_name,last_name\njose@x.com,José,Nuñez\nzoe@x.com,Zoë,Peña\n",
        "latin-1",
    )
    report = run_import(tmp_path, path)
    assert report.warnings
    assert "not UTF-8" in report.warnings[0]
    names = db_rows(tmp_path, "SELECT first_name, last_name FROM lead ORDER BY id")
    assert names == [("José", "Nuñez"), ("Zoë", "Peña")]


def test_utf16_with_bom(tmp_path):
    path = write_csv(tmp_path / "l.csv", "Email\tPhone\nana@x.com\t+14155550132\n", "utf-16")
    run_import(tmp_path, path)
    assert db_rows(tmp_path) == [("ana@x.com", "+14155550132")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n  \n", "the file is empty"),
        (b"email,phone\x00\x01\x02\n", "a binary file"),
        (b"PK\x03\x04rest-of-a-zip", "a spreadsheet or zip file"),
        (b"email\n" + b"a@x.com\n" * 20000 + b"b@x.com\x00\n", "a binary file (NUL bytes)"),
        (b"email,phone\n" + bytes(range(128, 256)) * 4 + b"\n", "unknown text encoding"),
        (b"name,city\nAna,Makati\n", "no email or phone column; its columns: 'name', 'city'"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "l.csv"
    path.write_bytes(content)
    with pytest.raises(LeadsInputError, match=re.escape(message)):
        run_import(tmp_path, path)
    assert not (tmp_path / "leads.db").exists()


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(LeadsInputError, match="is a directory"):
        run_import(tmp_path, tmp_path)
    with pytest.raises(LeadsInputError, match="no such file"):
        run_import(tmp_path, tmp_path / "missing.csv")


# ---------------------------------------------------------------- helpers


def test_snake_case():
    assert snake_case("Phone 2") == "phone_2"
    assert snake_case("Subscription Date") == "subscription_date"
    assert snake_case("CustomerId") == "customer_id"
    assert snake_case("  Año / Región ") == "año_región"


EMAILS = [
    "ana@x.com",
    "Ana.Cruz+tag@Gmail.COM",
    "a..b@x.com",
    ".a@x.com",
    "a.@x.com",
    "a@b",
    "a@-b.com",
    "a@localhost",
    "a@x.local",
    '"quoted"@x.com',
    "josé@x.com",
    "a" * 64 + "@x.com",
    "a" * 65 + "@x.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@@x.com",
    "@x.com",
    "a b@x.com",
    "a@xn--80ak6aa92e.com",
    "a@münchen.de",
]


def test_email_fast_path_agrees_with_email_validator():
    with open(PUBLIC_DATA / "customers-10000.csv", newline="") as fh:
        emails = [row["Email"] for row in csv.DictReader(fh)]
    for email in EMAILS + emails:
        try:
            expected = validate_email(email, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            expected = None
        assert normalise_email(email)[0] == expected, email


def test_sample_leads_from_csv(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        "email,phone,first_name,budget\nana@x.com,,Ana,5\nANA@x.com,,Dup,\nbad,,X,\n"
        ",+14155550132,,\n",
    )
    cfg = make_cfg(tmp_path)
    leads = sample_leads_from_csv(path, cfg)
    assert leads == [
        {"budget": 5, "email": "ana@x.com", "first_name": "Ana", "status": "new", "tags": []},
        {"phone": "+14155550132", "status": "new", "tags": []},
    ]
    assert sample_leads_from_csv(path, cfg, limit=1) == leads[:1]
    assert not (tmp_path / "leads.db").exists()


def test_list_leads_with_optouts_and_where(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        "email,tags,city\nana@x.com,buyer,Makati\nben@x.com,seller,Taguig\n",
    )
    run_import(tmp_path, path)
    store = Store.for_config(make_cfg(tmp_path))
    with store.write() as session:
        ana = session.get(Lead, 1)
        assert ana is not None
        session.add(OptOut(lead_id=1, channel="sms"))
    leads = list_leads(store)
    assert [(x["email"], x["optouts"], x["city"]) for x in leads] == [
        ("ana@x.com", ["sms"], "Makati"),
        ("ben@x.com", [], "Taguig"),
    ]
    assert [x["email"] for x in list_leads(store, where="'seller' in tags")] == ["ben@x.com"]
    assert [x["email"] for x in list_leads(store, where="lead.city == 'Makati'")] == ["ana@x.com"]
    assert len(list_leads(store, limit=1)) == 1
