"""`enrol_on` on a sequence: a lead enrols when a lead event happens (a first import, a status
change, a tag added), once per lead per campaign (issue 12 #2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.project import OUTBOX_CHANNELS, write_project
from tests.support.rows import sql_rows

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

CAMPAIGN = """\
[campaigns.nurture]
status = "active"
enrol_on = {events}
audience = {audience}

[[campaigns.nurture.steps]]
name = "hello"
channel = "email"
subject = "Hello"
body = "Hi {{{{ lead.first_name | default('there') }}}}"
"""

LEADS = "Email,First Name\nana@x.com,Ana\nben@x.com,Ben\n"


def _project(folder: Path, events: str, audience: str = '""') -> Path:
    write_project(
        folder,
        OUTBOX_CHANNELS,
        CAMPAIGN.format(events=events, audience=audience),
        tz="UTC",
        region=None,
    )
    (folder / "leads.csv").write_text(LEADS)
    return folder


def _enrolled(folder: Path) -> list[str]:
    return [
        r[0]
        for r in sql_rows(
            folder / "campaignctl.db",
            "SELECT lead.email FROM enrolment JOIN lead ON lead.id = enrolment.lead_id "
            "WHERE campaign = 'nurture' ORDER BY lead.email",
        )
    ]


def _messages(folder: Path) -> int:
    return int(sql_rows(folder / "campaignctl.db", "SELECT count(*) FROM message")[0][0])


def test_import_enrols_each_imported_lead_once(cli, tmp_path):
    project = _project(tmp_path, '["import"]')
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert _enrolled(project) == ["ana@x.com", "ben@x.com"]
    r = cli("-C", project, "leads", "import", "leads.csv", "--update")
    assert r.exit_code == 0, r.output
    assert cli("-C", project, "send").exit_code == 0
    assert _enrolled(project) == ["ana@x.com", "ben@x.com"]
    assert _messages(project) == 2


def test_status_qualified_enrols_once_even_when_it_changes_twice(cli, tmp_path):
    project = _project(tmp_path, '["status:qualified"]')
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert _enrolled(project) == []  # importing is not the event; no pass enrols everyone
    assert cli("-C", project, "leads", "set", "ana@x.com", "status=qualified").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert _enrolled(project) == ["ana@x.com"]
    assert cli("-C", project, "leads", "set", "ana@x.com", "status=new").exit_code == 0
    assert cli("-C", project, "leads", "set", "ana@x.com", "status=qualified").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert _enrolled(project) == ["ana@x.com"]
    assert _messages(project) == 1


def test_tag_buyer_enrols_through_leads_tag_case_insensitively(cli, tmp_path):
    project = _project(tmp_path, '["tag:Buyer"]', audience="\"first_name != 'Ben'\"")
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    r = cli("-C", project, "leads", "tag", "BUYER", "--where", "true")
    assert r.exit_code == 0, r.output
    assert cli("-C", project, "send").exit_code == 0
    assert _enrolled(project) == ["ana@x.com"]  # the audience still applies: not Ben


def test_events_before_and_between_passes_are_all_read(cli, tmp_path):
    project = _project(tmp_path, '["status:qualified", "tag:buyer"]')
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    assert cli("-C", project, "leads", "set", "ana@x.com", "status=qualified").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert cli("-C", project, "leads", "set", "ben@x.com", "tags=buyer").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert _enrolled(project) == ["ana@x.com", "ben@x.com"]


@pytest.mark.parametrize(
    ("events", "says"),
    [
        ('["import", "stage:qualified"]', "campaigns.nurture.enrol_on[1]"),
        ('["tag:"]', "campaigns.nurture.enrol_on[0]"),
    ],
)
def test_unknown_enrol_on_events_are_check_errors(cli, tmp_path, events, says):
    project = _project(tmp_path, events)
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    assert says in r.output
    assert '"status:VALUE"' in r.output


def _reenrol(project: Path) -> None:
    text = (project / "campaigns.toml").read_text()
    (project / "campaigns.toml").write_text(
        text.replace("enrol_on =", "reenrol = true\nenrol_on =")
    )


def _runs(folder: Path) -> list[tuple[str, int, str]]:
    return sql_rows(
        folder / "campaignctl.db",
        "SELECT lead.email, message.trigger_event, message.state FROM message "
        "JOIN lead ON lead.id = message.lead_id ORDER BY message.id",
    )


def test_reenrol_starts_the_sequence_again_once_per_new_event(cli, tmp_path):
    project = _project(tmp_path, '["status:qualified"]')
    _reenrol(project)
    assert cli("-C", project, "check").exit_code == 0
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    assert cli("-C", project, "leads", "set", "ana@x.com", "status=qualified").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert _runs(project) == [("ana@x.com", 0, "sent")]  # one step: the enrolment completed
    # qualified again (twice between two passes): one new run, its message apart from the first
    for status in ("new", "qualified", "new", "qualified"):
        assert cli("-C", project, "leads", "set", "ana@x.com", f"status={status}").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    runs = _runs(project)
    assert [(who, state) for who, _, state in runs] == [
        ("ana@x.com", "sent"),
        ("ana@x.com", "sent"),
    ]
    assert runs[1][1] < 0  # minus the journal row of the event that enrolled her again
    assert len(list((project / "outbox").glob("*.eml"))) == 2
    r = cli("-C", project, "explain", "ana@x.com", "--format", "json")
    assert r.exit_code == 0, r.output
    lines = [(x["what"], x["campaign"]) for x in json.loads(r.stdout)["timeline"]]
    assert lines.count(("enrolled", "nurture")) == 2  # the first enrolment and the second
    times = [x["at"] for x in json.loads(r.stdout)["timeline"] if x["what"] == "enrolled"]
    assert times[0] < times[1]
    assert any("enrolled again (reenrol)" in x["text"] for x in json.loads(r.stdout)["timeline"])
    # nothing new: a pass sends nothing more, and an active enrolment is never restarted
    assert cli("-C", project, "send").exit_code == 0
    assert len(_runs(project)) == 2
    assert _enrolled(project) == ["ana@x.com"]


def test_reenrol_respects_opt_outs_and_the_audience(cli, tmp_path):
    project = _project(tmp_path, '["tag:buyer"]', audience="\"status == 'new'\"")
    _reenrol(project)
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    for who in ("ana@x.com", "ben@x.com"):
        assert (
            cli("-C", project, "leads", "tag", "buyer", "--where", f"email == '{who}'").exit_code
            == 0
        )
    assert cli("-C", project, "send").exit_code == 0
    assert len(_runs(project)) == 2
    assert cli("-C", project, "leads", "optout", "ana@x.com").exit_code == 0
    assert cli("-C", project, "leads", "set", "ben@x.com", "status=won").exit_code == 0
    for who in ("ana@x.com", "ben@x.com"):  # the event again, for both
        assert cli("-C", project, "leads", "set", who, "tags-=buyer").exit_code == 0
        assert cli("-C", project, "leads", "set", who, "tags+=buyer").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert len(_runs(project)) == 2  # ana opted out, ben no longer matches the audience


def test_reenrol_waits_for_an_event_after_the_enrolment_ended(cli, tmp_path):
    # an event recorded while the lead is still in the sequence does not restart it once the
    # sequence has stopped (here on an opt-out): only a later event does
    project = _project(tmp_path, '["tag:buyer"]')
    text = (project / "campaigns.toml").read_text()
    text += (
        '\n[[campaigns.nurture.steps]]\nname = "later"\nchannel = "sms"\ndelay = "2d"\n'
        'body = "Hi. Reply STOP to opt out"\n'
    )
    (project / "campaigns.toml").write_text(text)
    _reenrol(project)
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    assert cli("-C", project, "leads", "set", "ana@x.com", "tags+=buyer").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert [(who, state) for who, _, state in _runs(project)] == [
        ("ana@x.com", "sent"),
        ("ana@x.com", "pending"),
    ]
    # tagged again while active, then the sequence stops
    assert cli("-C", project, "leads", "set", "ana@x.com", "tags-=buyer").exit_code == 0
    assert cli("-C", project, "leads", "set", "ana@x.com", "tags+=buyer").exit_code == 0
    assert cli("-C", project, "leads", "optout", "ana@x.com", "--channel", "sms").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert len(_runs(project)) == 2  # the earlier event does not restart it
    # tagged again after it stopped: a new run
    assert cli("-C", project, "leads", "set", "ana@x.com", "tags-=buyer").exit_code == 0
    assert cli("-C", project, "leads", "set", "ana@x.com", "tags+=buyer").exit_code == 0
    assert cli("-C", project, "send").exit_code == 0
    assert [(who, state) for who, _, state in _runs(project)][2:] == [
        ("ana@x.com", "sent"),
        ("ana@x.com", "pending"),
    ]


def test_reenrol_needs_enrol_on(cli, tmp_path):
    project = _project(tmp_path, "[]")
    _reenrol(project)
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    assert "campaigns.nurture.reenrol" in r.output
    assert "reenrol applies to enrol_on events" in r.output


def test_enrol_on_is_for_sequences(cli, tmp_path):
    project = _project(tmp_path, '["import"]')
    text = (project / "campaigns.toml").read_text()
    (project / "campaigns.toml").write_text(text.replace('status = "active"', 'kind = "blast"'))
    r = cli("-C", project, "check")
    assert r.exit_code == 1
    assert "enrol_on is for sequences" in r.output
