"""One-click unsubscribe: `/u/TOKEN` and its undo, and the link every email carries
(docs/web.md, "Unsubscribe").

In-process through the app (`web_rig`), once through a real uvicorn, and once in a real
browser (Debian's Chromium, driven by Playwright): that test FAILS when the browser cannot
start, it never skips.
"""

from __future__ import annotations

import email
import json
import re
import signal
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaignctl.store import events as store_events
from campaignctl.web.links import Links
from campaignctl.web.tokens import UNDO_FOR, Purpose, Signer
from campaignctl.web.unsubscribe import mask_email, mask_phone
from tests.support.cli import Cli
from tests.support.clock import days, travel
from tests.support.leads import add_leads, open_store
from tests.support.rows import optouts, rows
from tests.support.web import (
    BASE_URL,
    SECRET,
    WebRig,
    serve_process,
    server_section,
    web_rig,
)

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

JUAN = {"email": "juan.cruz@example.com", "phone": "+639171234567", "first_name": "Juan"}
MARIA = {"email": "maria@example.org", "phone": "+639171234568", "first_name": "Maria"}
LINKS = Links(BASE_URL, Signer([SECRET]))


def path_of(url: str) -> str:
    assert url.startswith(BASE_URL + "/u/")
    return url.removeprefix(BASE_URL)


def unsub(lead_id: int, channel: str) -> str:
    """The path of the lead's unsubscribe link, as `send` signs it."""
    return path_of(LINKS.unsubscribe(lead_id, channel))


def events_of(folder: Path, lead_id: int) -> list[tuple[str, str | None, dict[str, Any]]]:
    store = open_store(folder)
    try:
        with store.read() as s:
            return [(e.kind, e.channel, e.detail) for e in store_events.of_lead(s, lead_id)]
    finally:
        store.close()


def sent_emails(folder: Path) -> dict[str, EmailMessage]:
    """The outbox's emails by recipient."""
    out = {}
    for eml in (folder / "outbox").glob("*.eml"):
        msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        out[str(msg["To"].addresses[0].addr_spec)] = msg
    return out


def first_url(msg: EmailMessage) -> str:
    """The first URL of the message's List-Unsubscribe."""
    return str(msg["List-Unsubscribe"]).strip().split(">", 1)[0].removeprefix("<")


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def write(folder: Path, old: str, new: str) -> None:
    toml = folder / "campaigns.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new, 1))


@pytest.fixture
def served(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The minimal project (an email, then an SMS two days later) with `[server]` and its key."""
    monkeypatch.setenv("CAMPAIGNCTL_SECRET", SECRET)
    with (project / "campaigns.toml").open("a") as f:
        f.write("\n" + server_section())
    return project


@pytest.fixture
def juan(served: Path, cli: Cli) -> int:
    """Juan, sent the first email by a real `send`: his SMS step waits, pending."""
    (lead_id,) = add_leads(served, JUAN)
    res = cli("-C", served, "send")
    assert res.exit_code == 0, res.output
    assert {(m.step, m.state) for m in rows(served)} == {("hello", "sent"), ("nudge", "pending")}
    return lead_id


# ---------------------------------------------------------------- GET changes nothing


def test_masks_show_enough_to_recognise_and_no_more() -> None:
    assert mask_email("juan.cruz@example.com") == "j***@example.com"
    assert mask_email("x@example.com") == "x***@example.com"
    assert mask_phone("+639171234567") == "+**********67"


def test_get_shows_what_would_stop_and_changes_nothing(served: Path, juan: int) -> None:
    before = (optouts(served), events_of(served, juan), [m.state for m in rows(served)])
    with web_rig(served) as rig:
        page = rig.client.get(unsub(juan, "email"))
        sms = rig.client.get(unsub(juan, "sms"))
        head = rig.client.head(unsub(juan, "email"))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "emails from Ana Cruz to j***@example.com (channel &#34;email&#34;)" in page.text
    assert "juan.cruz@example.com" not in page.text
    assert '<button type="submit" id="unsubscribe">Unsubscribe</button>' in page.text
    assert "Nothing changes until you press the button" in page.text
    assert "text messages from Ana Cruz to +**********67" in sms.text
    assert "9171234567" not in sms.text
    assert head.status_code == 200
    assert (optouts(served), events_of(served, juan), [m.state for m in rows(served)]) == before


# ---------------------------------------------------------------- POST opts out, once


@pytest.mark.parametrize(
    ("body", "headers", "by"),
    [
        (b"from=page", {"content-type": "application/x-www-form-urlencoded"}, "unsubscribe page"),
        (
            b"List-Unsubscribe=One-Click",
            {"content-type": "application/x-www-form-urlencoded"},
            "one-click",
        ),
        (b"", {}, "unsubscribe link"),
    ],
    ids=["form", "rfc8058", "empty"],
)
def test_post_opts_out_once_and_skips_the_channels_pending_messages(
    served: Path, juan: int, body: bytes, headers: dict[str, str], by: str
) -> None:
    with web_rig(served) as rig:
        first = rig.client.post(unsub(juan, "sms"), content=body, headers=headers)
        after_first = (optouts(served), events_of(served, juan), rows(served))
        second = rig.client.post(unsub(juan, "sms"), content=body, headers=headers)
    assert first.status_code == 200
    assert "<title>Unsubscribed</title>" in first.text
    assert "Unsubscribed: no more text messages from Ana Cruz to +**********67" in first.text
    assert 'action="' + unsub(juan, "sms").removeprefix("/u/") + '/undo"' in first.text
    assert "/undo" not in second.text  # only the POST that unsubscribed offers the undo
    assert optouts(served) == [(juan, "sms", "unsubscribe")]
    optout_events = [e for e in events_of(served, juan) if e[0] == "optout"]
    assert optout_events == [("optout", "sms", {"by": by})]
    (nudge,) = [m for m in rows(served) if m.step == "nudge"]
    assert nudge.state == "skipped"
    assert nudge.reason == "opted out (sms)"
    # a second POST changes nothing, and says so
    assert second.status_code == 200
    assert "Nothing changed: you were already unsubscribed from text messages" in second.text
    assert (optouts(served), events_of(served, juan)) == after_first[:2]
    assert [(m.id, m.state, m.updated_at) for m in rows(served)] == [
        (m.id, m.state, m.updated_at) for m in after_first[2]
    ]


def test_an_email_unsubscribe_stops_the_sequence_that_stops_on_optout(
    served: Path, juan: int
) -> None:
    with web_rig(served) as rig:
        assert rig.client.post(unsub(juan, "email")).status_code == 200
    assert optouts(served) == [(juan, "email", "unsubscribe")]
    (nudge,) = [m for m in rows(served) if m.step == "nudge"]
    assert (nudge.state, nudge.reason) == ("skipped", "sequence stopped: optout")


def undo_form(page: str) -> tuple[str, str]:
    """The (action, undo token) of the page's "Subscribe again" form."""
    found = re.search(
        r'<form method="post" action="([^"]+)">\s*'
        r'<input type="hidden" name="undo" value="([^"]+)">',
        page,
    )
    assert found, page
    return found.group(1), found.group(2)


def undo(rig: WebRig, token: str, undo_token: str | None) -> Any:
    """POST the page's undo form: to /u/TOKEN/undo, with the undo token."""
    data = {} if undo_token is None else {"undo": undo_token}
    return rig.client.post(token + "/undo", data=data)


def optout_at(folder: Path, lead_id: int, channel: str) -> datetime:
    """When the lead's opt-out of `channel` was recorded (what an undo token names)."""
    store = open_store(folder)
    try:
        with store.read() as s:
            found = store_events.optout_of(s, lead_id, channel)
    finally:
        store.close()
    assert found is not None
    return found[1]


def test_undo_opts_back_in_once(served: Path, juan: int) -> None:
    token = unsub(juan, "email")
    with web_rig(served) as rig:
        unsubscribed = rig.client.post(token)
        action, undo_token = undo_form(unsubscribed.text)
        assert action == token.removeprefix("/u/") + "/undo"  # relative: /u/TOKEN/undo
        undone = undo(rig, token, undo_token)
        assert optouts(served) == []
        again = undo(rig, token, undo_token)
        page = rig.client.get(token)
        assert rig.client.get(token + "/undo").status_code == 405  # a scanner undoes nothing
    assert undone.status_code == 200
    assert "<title>Subscribed again</title>" in undone.text
    assert "Subscribed again to emails from Ana Cruz to j***@example.com" in undone.text
    # the page offers to unsubscribe again, back at /u/TOKEN
    assert 'action="../' + token.removeprefix("/u/") + '"' in undone.text
    # the same undo token a second time: nothing to undo
    assert "<title>Nothing to undo</title>" in again.text
    assert "Nothing changed: you are not unsubscribed" in again.text
    assert "<title>Unsubscribe?</title>" in page.text
    kinds = [(kind, ch, detail) for kind, ch, detail in events_of(served, juan) if ch == "email"]
    assert kinds == [
        ("optout", "email", {"by": "unsubscribe link"}),
        ("optin", "email", {"by": "unsubscribe page (undo)"}),
    ]


def test_undo_never_takes_back_an_opt_out_made_another_way(
    served: Path, juan: int, cli: Cli
) -> None:
    assert cli("-C", served, "leads", "optout", JUAN["email"], "--channel", "email").exit_code == 0
    token = unsub(juan, "email")
    # even a well-signed undo token naming that very opt-out: not an unsubscribe's
    forged = LINKS.undo_token(juan, "email", optout_at(served, juan, "email"), T)
    with web_rig(served, clock=lambda: T) as rig:
        page = rig.client.get(token)
        post = rig.client.post(token)
        undone = undo(rig, token, forged)
    assert "Already unsubscribed" in page.text
    assert "/undo" not in page.text
    assert "Nothing changed: you were already unsubscribed" in post.text
    assert "/undo" not in post.text
    assert "stopped another way" in undone.text
    assert optouts(served) == [(juan, "email", "manual")]


#: The web app's clock in the tests below (`Web.clock`), months away from the wall clock.
T = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def test_the_unsubscribe_token_no_longer_re_subscribes(served: Path, juan: int) -> None:
    """The link in every email the lead got cannot take their "stop" back: only the undo token
    the unsubscribing POST handed out can, and no other page hands one out."""
    token = unsub(juan, "email")
    with web_rig(served) as rig:
        assert rig.client.post(token).status_code == 200
        before = (optouts(served), events_of(served, juan))
        bare = rig.client.post(token + "/undo")
        with_itself = undo(rig, token, token.removeprefix("/u/"))
        one_click = rig.client.post(token + "/undo", content=b"List-Unsubscribe=One-Click")
        # and neither the page nor a second POST offers an undo to whoever holds the link
        page = rig.client.get(token)
        again = rig.client.post(token)
    for res in (bare, with_itself, one_click):
        assert res.status_code == 404
        assert "<title>Nothing to undo</title>" in res.text
        assert "Nothing changed: this button no longer works" in res.text
    assert "<title>Already unsubscribed</title>" in page.text
    assert "Already unsubscribed" in again.text
    assert 'name="undo"' not in page.text + again.text
    assert "/undo" not in page.text + again.text
    assert (optouts(served), events_of(served, juan)) == before
    assert optouts(served) == [(juan, "email", "unsubscribe")]


def test_undo_works_for_undo_for_on_the_apps_clock_and_not_after(served: Path, juan: int) -> None:
    token = unsub(juan, "email")
    now = [T]
    with web_rig(served, clock=lambda: now[0]) as rig:
        _, undo_token = undo_form(rig.client.post(token).text)
        now[0] = T + UNDO_FOR + timedelta(minutes=1)
        late = undo(rig, token, undo_token)
        assert optouts(served) == [(juan, "email", "unsubscribe")]
        now[0] = T + UNDO_FOR - timedelta(minutes=1)  # the clock is the app's, not the wall's
        in_time = undo(rig, token, undo_token)
    assert timedelta(hours=24) == UNDO_FOR
    assert late.status_code == 404
    assert "Nothing changed: this button no longer works" in late.text
    assert "within 24 hours" in late.text
    assert in_time.status_code == 200
    assert "<title>Subscribed again</title>" in in_time.text
    assert optouts(served) == []


def test_an_earlier_unsubscribes_undo_cannot_lift_a_later_one(served: Path, juan: int) -> None:
    token = unsub(juan, "sms")
    now = [T]
    with web_rig(served, clock=lambda: now[0]) as rig:
        _, first = undo_form(rig.client.post(token).text)
        now[0] += timedelta(minutes=5)
        assert undo(rig, token, first).status_code == 200
        assert optouts(served) == []
        now[0] += timedelta(minutes=5)
        _, second = undo_form(rig.client.post(token).text)
        assert second != first
        now[0] += timedelta(minutes=5)
        stale = undo(rig, token, first)
        assert optouts(served) == [(juan, "sms", "unsubscribe")]
        fresh = undo(rig, token, second)
    assert stale.status_code == 404
    assert "Nothing changed: this button no longer works" in stale.text
    assert fresh.status_code == 200
    assert "<title>Subscribed again</title>" in fresh.text
    assert optouts(served) == []
    optins = [e for e in events_of(served, juan) if e[0] == "optin"]
    assert len(optins) == 2


def test_a_tampered_or_other_undo_token_is_refused(served: Path, juan: int) -> None:
    (maria,) = add_leads(served, MARIA)
    token = unsub(juan, "email")
    signer = Signer([SECRET])
    with web_rig(served, clock=lambda: T) as rig:
        _, good = undo_form(rig.client.post(token).text)
        made = optout_at(served, juan, "email")
        _, marias = undo_form(rig.client.post(unsub(maria, "email")).text)
        before = (optouts(served), events_of(served, juan))
        bad = {
            "tampered": _tampered(good),
            "another lead's undo": marias,
            "another channel's": LINKS.undo_token(juan, "sms", made, T),
            "another opt-out time": LINKS.undo_token(juan, "email", made + timedelta(seconds=1), T),
            "a click token": signer.dumps(Purpose.CLICK, [juan, "email"]),
            "an open token": signer.dumps(Purpose.OPEN, [juan]),
            "another key": Signer(["some-other-key-0123456789"]).dumps_at(
                Purpose.UNDO, [juan, "email", made.isoformat()], T
            ),
            "a wrong payload": signer.dumps_at(Purpose.UNDO, [juan, "email"], T),
            "a naive time": signer.dumps_at(
                Purpose.UNDO, [juan, "email", made.replace(tzinfo=None).isoformat()], T
            ),
            "garbage": "not-a-token",
        }
        for why, undo_token in bad.items():
            res = undo(rig, token, undo_token)
            assert res.status_code == 404, why
            assert "Nothing changed: this button no longer works" in res.text, why
        # Maria's own undo token, on Maria's page, works
        assert undo(rig, unsub(maria, "email"), marias).status_code == 200
    assert (optouts(served), events_of(served, juan)) == (
        [o for o in before[0] if o[0] != maria],
        before[1],
    )
    assert optouts(served) == [(juan, "email", "unsubscribe")]


def test_undo_tokens_are_timed_and_the_others_never_expire() -> None:
    signer = Signer([SECRET])
    with pytest.raises(ValueError, match="timed"):
        signer.dumps(Purpose.UNDO, [1, "email", T.isoformat()])
    with pytest.raises(ValueError, match="never expire"):
        signer.dumps_at(Purpose.UNSUBSCRIBE, [1, "email"], T)
    undo_token = LINKS.undo_token(1, "email", T, T)
    assert signer.loads_timed(Purpose.UNDO, undo_token) == ([1, "email", T.isoformat()], T)
    assert LINKS.read_undo(undo_token, T + UNDO_FOR) == (1, "email", T)
    assert LINKS.read_undo(undo_token, T + UNDO_FOR + timedelta(seconds=1)) is None
    assert LINKS.read_unsubscribe(undo_token) is None
    # an unsubscribe link from years ago still works
    assert LINKS.read_unsubscribe(unsub(1, "email").removeprefix("/u/")) == (1, "email")


# ---------------------------------------------------------------- bad tokens, gone leads


def _tampered(token: str) -> str:
    payload, _, signature = token.partition(".")
    return f"{payload}.{signature[:5]}{'A' if signature[5] != 'A' else 'B'}{signature[6:]}"


def test_bad_tokens_are_404_and_change_nothing(served: Path, juan: int) -> None:
    good = unsub(juan, "email").removeprefix("/u/")
    other_lead = unsub(juan + 1, "email").removeprefix("/u/")
    bad = {
        "tampered": _tampered(good),
        "another lead's payload": f"{other_lead.partition('.')[0]}.{good.partition('.')[2]}",
        "a click token": Signer([SECRET]).dumps(Purpose.CLICK, [juan, "email"]),
        "an open token": Signer([SECRET]).dumps(Purpose.OPEN, [juan]),
        "another key": Signer(["some-other-key-0123456789"]).dumps(
            Purpose.UNSUBSCRIBE, [juan, "email"]
        ),
        "a wrong payload": Signer([SECRET]).dumps(Purpose.UNSUBSCRIBE, ["juan", "email"]),
        "garbage": "not-a-token",
    }
    before = (optouts(served), events_of(served, juan), [m.state for m in rows(served)])
    with web_rig(served) as rig:
        for why, token in bad.items():
            for res in (
                rig.client.get(f"/u/{token}"),
                rig.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click"),
                rig.client.post(f"/u/{token}/undo"),
            ):
                assert res.status_code == 404, why
                assert "There is nothing here" in res.text
    assert (optouts(served), events_of(served, juan), [m.state for m in rows(served)]) == before


def test_an_erased_lead_has_nothing_to_unsubscribe(served: Path, juan: int, cli: Cli) -> None:
    assert cli("-C", served, "leads", "delete", JUAN["email"], "--yes").exit_code == 0
    before = (optouts(served), events_of(served, juan), [m.state for m in rows(served)])
    with web_rig(served) as rig:
        for channel in ("email", "sms"):
            for res in (
                rig.client.get(unsub(juan, channel)),
                rig.client.post(unsub(juan, channel)),
                rig.client.post(unsub(juan, channel) + "/undo"),
            ):
                assert res.status_code == 404
                assert "<title>Nothing to do</title>" in res.text
        # a test send's link names lead 0: nobody
        assert rig.client.post(unsub(0, "email")).status_code == 404
    assert (optouts(served), events_of(served, juan), [m.state for m in rows(served)]) == before


# ---------------------------------------------------------------- the link in every email


def test_a_sent_email_carries_the_link_that_opts_its_lead_out(served: Path, cli: Cli) -> None:
    juan, maria = add_leads(served, JUAN, MARIA)
    assert cli("-C", served, "send").exit_code == 0
    emails = sent_emails(served)
    to_maria = emails[MARIA["email"]]
    header = " ".join(str(to_maria["List-Unsubscribe"]).split())  # folded: it is long
    found = re.fullmatch(r"<(https://out\.example\.test/u/[^>]+)>, <mailto:([^>]+)>", header)
    assert found, header
    url = found.group(1)
    assert found.group(2) == "ana@sunrise.example?subject=unsubscribe"
    assert to_maria["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert LINKS.read_unsubscribe(url.removeprefix(BASE_URL + "/u/")) == (maria, "email")
    assert f"Unsubscribe: {url}\n" in text_of(to_maria)
    assert url not in str(emails[JUAN["email"]])  # each lead's own link
    # what a mailbox does with it: RFC 8058's POST
    with web_rig(served) as rig:
        res = rig.client.post(
            path_of(url),
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert res.status_code == 200
    assert optouts(served) == [(maria, "email", "unsubscribe")]
    assert juan != maria


def test_templates_have_unsubscribe_url_and_sms_bodies_are_unchanged(
    served: Path, cli: Cli
) -> None:
    write(
        served,
        "body = \"Hi {{ lead.first_name | default('there') }}!\"",
        'body = "Hi! Not interested? {{ unsubscribe_url }}"',
    )
    write(served, "reply STOP to opt out.", "reply STOP to opt out. {{ unsubscribe_url }}")
    (juan,) = add_leads(served, JUAN)
    assert cli("-C", served, "send").exit_code == 0
    msg = sent_emails(served)[JUAN["email"]]
    url = first_url(msg)
    assert f"Hi! Not interested? {url}\n" in text_of(msg)
    travel(served, days(2))
    assert cli("-C", served, "send").exit_code == 0
    (sms,) = [json.loads(p.read_text()) for p in (served / "outbox").glob("*.json")]
    sms_url = BASE_URL + unsub(juan, "sms")
    assert sms["body"] == f"Hi Juan, reply STOP to opt out. {sms_url}"  # no footer added


def test_without_server_unsubscribe_url_is_the_senders_or_undefined(
    project: Path, cli: Cli
) -> None:
    write(
        project,
        "body = \"Hi {{ lead.first_name | default('there') }}!\"",
        'body = "Bye {{ unsubscribe_url }}"',
    )
    res = cli("-C", project, "check")
    assert res.exit_code == 1
    assert "'unsubscribe_url' is undefined" in res.stdout
    res = cli("-C", project, "preview", "welcome")
    assert res.exit_code != 0
    assert "hint: add [server] (one-click unsubscribe links, docs/web.md;" in res.stderr
    write(
        project,
        'postal_address = "',
        'unsubscribe_url = "https://x.example/u?e={{ lead.email }}"\npostal_address = "',
    )
    res = cli("-C", project, "preview", "welcome")
    assert res.exit_code == 0, res.output
    assert "Bye https://x.example/u?e=" in res.stdout


def test_send_without_the_key_exits_78_before_sending(
    served: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_leads(served, JUAN)
    monkeypatch.delenv("CAMPAIGNCTL_SECRET")
    for args in (["send"], ["send", "--dry-run"], ["preview", "welcome"]):
        res = cli("-C", served, *args)
        assert res.exit_code == 78, (args, res.output)
        lines = res.stderr.splitlines()
        assert lines[0].startswith("campaignctl: error: ")
        assert "server.secret_env: environment variable CAMPAIGNCTL_SECRET is not set" in lines[0]
        assert lines[1].startswith("hint: export CAMPAIGNCTL_SECRET=")
        assert "Traceback" not in res.output
    assert not (served / "outbox").exists()
    assert [m.state for m in rows(served)] == []


def test_preview_check_and_test_sends_show_the_real_link(served: Path, cli: Cli) -> None:
    res = cli("-C", served, "preview", "welcome")
    assert res.exit_code == 0, res.output
    found = re.search(
        r"^List-Unsubscribe:\s+<(https://out\.example\.test/u/\S+)>, <mailto:", res.stdout, re.M
    )
    assert found, res.stdout
    # a sample lead has no id: its link names lead 0, nobody
    assert LINKS.read_unsubscribe(found.group(1).removeprefix(BASE_URL + "/u/")) == (0, "email")
    assert f"Unsubscribe: {found.group(1)}\n" in res.stdout
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in res.stdout
    # a test send of a real lead's message: its link names nobody either
    (juan,) = add_leads(served, JUAN)
    res = cli(
        "-C",
        served,
        "send",
        "--test-to",
        "me@sunrise.example",
        "--campaign",
        "welcome",
        "--lead",
        JUAN["email"],
    )
    assert res.exit_code == 0, res.output
    test_email = sent_emails(served)["me@sunrise.example"]
    url = first_url(test_email)
    assert LINKS.read_unsubscribe(url.removeprefix(BASE_URL + "/u/")) == (0, "email")
    assert juan != 0


def test_check_warns_that_the_senders_url_is_unused_with_server(served: Path, cli: Cli) -> None:
    res = cli("-C", served, "check")
    assert res.exit_code == 0, res.output
    assert "sender.unsubscribe_url" not in res.stdout
    write(
        served, 'postal_address = "', 'unsubscribe_url = "https://x.example/u"\npostal_address = "'
    )
    res = cli("-C", served, "check")
    assert res.exit_code == 0, res.output
    assert "sender.unsubscribe_url: not used while [server] is configured" in res.stdout


def test_check_without_the_key_still_renders_unsubscribe_url(
    served: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        served,
        "body = \"Hi {{ lead.first_name | default('there') }}!\"",
        'body = "Bye {{ unsubscribe_url }}"',
    )
    monkeypatch.delenv("CAMPAIGNCTL_SECRET")
    res = cli("-C", served, "check")
    assert res.exit_code == 1
    errors = [line for line in res.stdout.splitlines() if "error" in line.lower()]
    assert any("server.secret_env" in line for line in errors)
    assert "unsubscribe_url' is undefined" not in res.stdout


# ---------------------------------------------------------------- a real uvicorn, a real browser


def test_one_click_through_a_real_uvicorn(served: Path, juan: int) -> None:
    token = unsub(juan, "email")
    with serve_process(served) as (proc, url):
        page = httpx.get(url + token, timeout=10)
        assert page.status_code == 200
        assert optouts(served) == []
        res = httpx.post(
            url + token,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert res.status_code == 200
        assert optouts(served) == [(juan, "email", "unsubscribe")]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert token.removeprefix("/u/") not in err  # the access log never holds a working link
    logged = [line for line in err.splitlines() if line.startswith("serve: 127.0.0.1 ")]
    assert logged[0].startswith(f"serve: 127.0.0.1 GET {token[:13]}… 200 ")
    assert logged[1].startswith(f"serve: 127.0.0.1 POST {token[:13]}… 200 ")


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_the_page_in_a_real_browser(served: Path, juan: int, tmp_path: Path) -> None:
    """Headless Chromium loads the page, clicks the button; the lead is opted out. The
    screenshots stay in the test's tmp dir. No skip: a browser that cannot start fails it."""
    from playwright.sync_api import sync_playwright

    token = unsub(juan, "email")
    with serve_process(served) as (_proc, url), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + token)
            assert page.title() == "Unsubscribe?"
            assert "j***@example.com" in page.inner_text("main")
            page.screenshot(path=str(tmp_path / "unsubscribe-page.png"))
            assert optouts(served) == []
            with page.expect_navigation():
                page.click("#unsubscribe")
            assert page.title() == "Unsubscribed"
            page.screenshot(path=str(tmp_path / "unsubscribed.png"))
            assert optouts(served) == [(juan, "email", "unsubscribe")]
            assert [e for e in events_of(served, juan) if e[0] == "optout"] == [
                ("optout", "email", {"by": "unsubscribe page"})
            ]
            with page.expect_navigation():
                page.click("#undo")
            assert page.title() == "Subscribed again"
            assert optouts(served) == []
        finally:
            browser.close()
    for shot in ("unsubscribe-page.png", "unsubscribed.png"):
        assert (tmp_path / shot).read_bytes().startswith(b"\x89PNG")


def test_a_daemon_reload_adding_server_without_its_key_keeps_the_old_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from campaignctl.config import load
    from campaignctl.daemon import Daemon, EventLog
    from campaignctl.runner import Runner
    from campaignctl.store import Store

    monkeypatch.delenv("CAMPAIGNCTL_SECRET", raising=False)
    cfg = load(project / "campaigns.toml")
    store = Store.for_config(cfg)
    out = io.StringIO()
    daemon = Daemon(cfg, store, EventLog(out=out))
    daemon._runner = Runner(cfg, store, lock=False, environ={})  # as while the daemon runs
    with (project / "campaigns.toml").open("a") as f:
        f.write("\n" + server_section())
    assert daemon.reload_if_changed() is False
    assert daemon.cfg is cfg
    line = out.getvalue().splitlines()[-1]
    assert "server.secret_env: environment variable CAMPAIGNCTL_SECRET is not set" in line
    assert "keeping the previous campaign file (hint: export CAMPAIGNCTL_SECRET=" in line
    store.close()
