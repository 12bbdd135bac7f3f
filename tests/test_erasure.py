"""`leads delete` (erasure) and the suppression list (`suppress import|list|remove`): an erased
or suppressed address is never messaged again, checked in the claim transaction."""

from __future__ import annotations

import functools
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from campaignctl.engine import Engine
from campaignctl.store import Event, Lead, Message, Store
from campaignctl.store.schema import Journal, Suppression
from campaignctl.suppress_list import import_file
from tests.support import T0, Cli, add_leads, days, messages, open_store, project, travel

ANA, ANA_PHONE = "ana@lead.example", "+639171234567"
LEADS_CSV = (
    "Email,Phone,First Name,Budget\n"
    f"{ANA},0917 123 4567,Ana,3000000\n"
    "ben@lead.example,0918 123 4567,Ben,2000000\n"
)


def _outbox_text(folder: Path) -> str:
    """Everything the outbox channels wrote (emails as .eml, texts as .json)."""
    box = folder / "outbox"
    return "".join(p.read_text() for p in sorted(box.iterdir())) if box.exists() else ""


def _sent_to(folder: Path, who: str) -> int:
    box = folder / "outbox"
    return sum(who in p.read_text() for p in box.iterdir()) if box.exists() else 0


def _rows(folder: Path, model: Any) -> list[Any]:
    store = open_store(folder)
    try:
        with store.read() as s:
            return list(s.exec(select(model).order_by(col(model.id))))
    finally:
        store.close()


def test_a_deleted_lead_reimported_is_never_messaged(cli: Cli, project: Path) -> None:
    (project / "leads.csv").write_text(LEADS_CSV)
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert _sent_to(project, ANA) == 1  # the welcome email, before she asked to be forgotten

    r = cli("-C", project, "leads", "delete", "ANA@lead.example", "--yes")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{ANA} erased: 2 address(es) suppressed on every channel")
    erased = _rows(project, Lead)[0]
    assert (erased.email, erased.phone, erased.first_name, erased.attrs, erased.tags) == (
        None,
        None,
        None,
        {},
        [],
    )
    first = [m for m in _rows(project, Message) if m.lead_id == erased.id]
    assert [(m.step, m.state) for m in first] == [("hello", "sent"), ("nudge", "skipped")]
    assert all(m.recipient is None and m.subject is None and m.body is None for m in first)
    assert {s.source for s in _rows(project, Suppression)} == {"erased"}
    assert ANA not in json.dumps([s.model_dump(mode="json") for s in _rows(project, Suppression)])
    (entry,) = [j for j in _rows(project, Journal) if j.kind == "lead.erased"]
    assert entry.lead_id == erased.id
    assert entry.source == "leads delete"

    # The same CSV row again: Ana is a new lead (her address was freed), and suppressed.
    r = cli("-C", project, "leads", "import", "leads.csv")
    assert r.exit_code == 0, r.output
    assert "1 imported lead(s) have an address on the suppression list" in r.stdout
    assert "line 2: imported; address on the suppression list" in r.stdout
    r = cli("-C", project, "send")
    assert r.exit_code == 0, r.output
    travel(project, days(3))
    r2 = cli("-C", project, "send")
    assert r2.exit_code == 0, r2.output
    assert _sent_to(project, ANA) == 1
    assert ANA_PHONE not in _outbox_text(project)
    again = [m for m in _rows(project, Message) if m.lead_id not in (erased.id, 2)]
    assert [(m.step, m.state, m.reason_code, m.reason) for m in again] == [
        ("hello", "skipped", "suppressed", "address on the suppression list (email)"),
        ("nudge", "skipped", "suppressed", "address on the suppression list (sms)"),
    ]
    assert "+639181234567" in _outbox_text(project)  # Ben's nudge went


def test_erasure_clears_event_content_and_keeps_status_counts(cli: Cli, project: Path) -> None:
    (project / "leads.csv").write_text(LEADS_CSV)
    cli("-C", project, "leads", "import", "leads.csv")
    cli("-C", project, "send")
    travel(project, days(3))
    cli("-C", project, "send")  # both sequences complete: nothing pending
    store = open_store(project)
    with store.write() as s:
        s.add(
            Event(
                lead_id=1,
                message_id=1,
                channel="email",
                kind="reply",
                source_id="r1",
                detail={"from": ANA, "subject": "Re: Hello Ana", "body": "Call me on 0917..."},
                occurred_at=T0,
            )
        )
        s.add(
            Event(
                lead_id=None,
                channel="sms",
                kind="reply",
                source_id="r2",
                detail={"address": ANA_PHONE, "body": "who is this?"},
                occurred_at=T0,
            )
        )
    store.close()
    assert cli("-C", project, "leads", "set", ANA, "tags+=Santos-Family").exit_code == 0
    before = cli("-C", project, "status", "--format", "json")
    assert before.exit_code == 0, before.output

    r = cli("-C", project, "leads", "delete", ANA_PHONE, "--yes")
    assert r.exit_code == 0, r.output
    # the journal keeps that a tag was added, not which: a tag can say something about her
    with sqlite3.connect(project / "campaignctl.db") as db:
        tags = db.execute("SELECT code, detail FROM journal WHERE kind = 'lead.tag'").fetchall()
    assert tags == [("added", "{}")]

    after = cli("-C", project, "status", "--format", "json")
    assert json.loads(after.stdout)["campaigns"] == json.loads(before.stdout)["campaigns"]
    events = {e.source_id: e.detail for e in _rows(project, Event)}
    assert events == {"r1": {"erased": True}, "r2": {"erased": True}}
    listed = cli("-C", project, "leads", "list", "--format", "csv").stdout
    assert ANA not in listed
    assert "Ana" not in listed


def test_delete_needs_yes_off_a_terminal_and_a_known_lead(cli: Cli, project: Path) -> None:
    add_leads(project, {"email": ANA})
    r = cli("-C", project, "leads", "delete", ANA)
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        f"campaignctl: error: leads delete {ANA}: erasing cannot be undone; confirm it",
        f"hint: pass --yes: campaignctl leads delete {ANA} --yes",
    ]
    assert _rows(project, Lead)[0].email == ANA  # nothing written
    r = cli("-C", project, "leads", "delete", "nobody@lead.example", "--yes")
    assert r.exit_code == 2
    assert "no lead with email or phone 'nobody@lead.example'" in r.stderr
    assert "hint: find the lead with `campaignctl leads list" in r.stderr
    assert _rows(project, Suppression) == []


def test_suppress_import_of_addresses_that_are_not_leads(cli: Cli, project: Path) -> None:
    (project / "dnc.csv").write_text(
        f"E-mail,Mobile\n{ANA.upper()},\n,+63 918 123 4567\nnot-an-address,\n{ANA},\n"
    )
    r = cli("-C", project, "suppress", "import", "dnc.csv")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == (
        "dnc.csv: 2 address(es) added to the suppression list (every channel), "
        "0 already suppressed, 1 row(s) rejected"
    )
    assert lines[1].startswith("line 4: rejected: email 'not-an-address' is not valid")
    again = cli("-C", project, "suppress", "import", "dnc.csv")
    assert "0 address(es) added" in again.stdout
    assert "2 already suppressed" in again.stdout

    (project / "leads.csv").write_text(LEADS_CSV)
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    listed = json.loads(cli("-C", project, "suppress", "list", "--format", "json").stdout)
    assert sorted((x["lead"], x["channel"], x["source"]) for x in listed) == [
        (ANA, "*", "import"),
        ("ben@lead.example", "*", "import"),  # his phone; the lead shown by its email
    ]
    table = cli("-C", project, "suppress", "list").stdout
    assert listed[0]["hash"][:12] in table
    assert listed[0]["hash"] not in table
    cli("-C", project, "send")
    travel(project, days(3))
    cli("-C", project, "send")
    assert _sent_to(project, ANA) == 0
    assert "+639181234567" not in _outbox_text(project)
    assert _sent_to(project, "ben@lead.example") == 1  # only his phone is suppressed
    reasons = {(m.lead_id, m.step): m.reason_code for m in _rows(project, Message)}
    assert reasons == {
        (1, "hello"): "suppressed",
        (1, "nudge"): None,  # Ana's phone was not on the list: her SMS went
        (2, "hello"): None,
        (2, "nudge"): "suppressed",
    }


def test_suppress_on_one_channel_and_remove(cli: Cli, project: Path) -> None:
    (project / "dnc.csv").write_text(f"email\n{ANA}\n")
    r = cli("-C", project, "suppress", "import", "dnc.csv", "--channel", "sms")
    assert "(channel sms)" in r.stdout
    r = cli("-C", project, "suppress", "remove", ANA, "--channel", "email")
    assert r.exit_code == 2
    assert "is not on the suppression list on channel email" in r.stderr
    assert "hint: `campaignctl suppress list`" in r.stderr
    r = cli("-C", project, "suppress", "remove", ANA.upper())
    assert r.exit_code == 0, r.output
    assert "removed from the suppression list (1 entry)" in r.stdout
    assert json.loads(cli("-C", project, "suppress", "list", "--format", "json").stdout) == []


def test_removing_one_channel_of_an_every_channel_entry_says_so(cli: Cli, project: Path) -> None:
    (project / "dnc.csv").write_text(f"email\n{ANA}\n")
    assert cli("-C", project, "suppress", "import", "dnc.csv").exit_code == 0  # every channel
    r = cli("-C", project, "suppress", "remove", ANA, "--channel", "email")
    assert r.exit_code == 2
    assert "is suppressed on every channel (*), not on channel email alone" in r.stderr
    assert f"hint: to allow it again everywhere: campaignctl suppress remove '{ANA}'" in r.stderr
    listed = json.loads(cli("-C", project, "suppress", "list", "--format", "json").stdout)
    assert len(listed) == 1  # nothing was removed


def test_suppress_bad_input(cli: Cli, project: Path) -> None:
    (project / "x.csv").write_text("name,city\nAna,Makati\n")
    r = cli("-C", project, "suppress", "import", "x.csv")
    assert r.exit_code == 2
    assert "x.csv: no email or phone column; its columns: 'name', 'city'" in r.stderr
    # the fix is --map on suppress import: never importing the addresses as leads
    assert "hint: campaignctl suppress import x.csv --map email=COLUMN" in r.stderr
    assert "leads import" not in r.stderr
    r = cli("-C", project, "suppress", "import", "x.csv", "--channel", "fax")
    assert r.exit_code == 2
    assert "no channel named 'fax'" in r.stderr
    r = cli("-C", project, "suppress", "remove", ANA)
    assert r.exit_code == 2
    assert "is not on the suppression list" in r.stderr
    r = cli("-C", project, "suppress", "remove", "hello")
    assert r.exit_code == 2
    assert "'hello': not an email address or a phone number" in r.stderr
    assert not (project / "campaignctl.db").exists()


SMS_ONLY = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi"
"""


def test_the_claim_sees_a_suppression_added_after_enrolment(tmp_path: Path) -> None:
    from campaignctl.channels.memory import MemoryChannel

    cfg = project(tmp_path, SMS_ONLY)
    store = Store.for_config(cfg)
    add_leads(store, 3)
    eng = Engine(cfg, store, channels={"sms": MemoryChannel("sms", "sms")})
    assert eng.enrol(T0) == 3
    (tmp_path / "dnc.csv").write_text("phone\n+1 212 555 0001\n")
    import_file(lambda: store, cfg, tmp_path / "dnc.csv", "sms", T0)
    res = eng.run_pass(T0 + days(0.01), random.Random(0))
    assert res.total("sent") == 2
    skipped = [m for m in messages(store) if m.state == "skipped"]
    assert [(m.lead_id, m.reason_code) for m in skipped] == [(2, "suppressed")]


def test_an_erased_lead_is_never_enrolled_again(tmp_path: Path) -> None:
    from campaignctl.channels.memory import MemoryChannel
    from campaignctl.erasure import erase
    from campaignctl.planner import plan

    cfg = project(tmp_path, SMS_ONLY)
    store = Store.for_config(cfg)
    add_leads(store, 3)
    erase(store, cfg, "+1 212 555 0001", T0)
    assert plan(cfg, store, T0, days=2).campaigns["welcome"].sends == 2
    eng = Engine(cfg, store, channels={"sms": MemoryChannel("sms", "sms")})
    assert eng.enrol(T0) == 2
    assert sorted(m.lead_id for m in messages(store)) == [1, 3]


def test_hashes_are_keyed_per_database_and_a_copy_keeps_its_key(tmp_path: Path) -> None:

    from campaignctl.leads.addresses import address_hash, hasher
    from campaignctl.store import meta
    from campaignctl.suppression import suppressed_addresses

    keys = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        cfg = project(tmp_path / name, SMS_ONLY)
        (tmp_path / name / "dnc.csv").write_text(f"email\n{ANA}\n")
        store = Store.for_config(cfg)
        import_file(
            functools.partial(Store.for_config, cfg), cfg, tmp_path / name / "dnc.csv", None, T0
        )
        with store.read() as s:
            key = meta.suppression_key(s)
            assert key is not None
            keys.append(key)
            (row,) = s.exec(select(Suppression)).all()
        assert row.hash == address_hash(key, ANA) == hasher(key)(ANA)
        store.close()
    assert keys[0] != keys[1]
    # copied as a person would copy a live database: SQLite's backup (a plain file copy can
    # miss what is still in the write-ahead log)
    src, dst = (
        sqlite3.connect(tmp_path / "a" / "campaignctl.db"),
        sqlite3.connect(tmp_path / "copy.db"),
    )
    src.backup(dst)
    src.close()
    dst.close()
    copy = Store(f"sqlite:///{tmp_path / 'copy.db'}")
    with copy.read() as s:
        assert suppressed_addresses(s, [(7, ANA, None)]) == {7: {ANA: {"*"}}}
    copy.close()
