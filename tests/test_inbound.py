"""Replies, opt-outs, bounces and delivery statuses: classification and recording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_string
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime

import pytest
from sqlmodel import select

from campaignctl.classify import (
    Inbound,
    Kind,
    Known,
    SentRef,
    classify_email,
    classify_text,
    classify_twilio,
    our_addresses,
)
from campaignctl.inbound import find_lead, get_cursor, load_known, record, set_cursor
from campaignctl.store import Enrolment, Event, Lead, Message, OptOut, Store

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SENT_AT = NOW - timedelta(days=1)
OURS = ("ana@sunrise.example",)
HELLO_ID = "<hello-1@sunrise.example>"
STOP_ON = {"welcome": ["reply", "optout", "bounce"], "news": ["bounce"]}


# ---------------------------------------------------------------- keywords

OPTOUT_WORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
# the words `check`'s opt-out lint accepts in other languages must opt the lead out too
OPTOUT_WORDS += ["ALTO", "BAJA", "ARRET", "ARRÊT"]


def _variants(word: str) -> list[str]:
    return [word, word.lower(), word.title(), f"  {word}  ", f"{word}.", f"{word}!!", f"\n{word}\n"]


@pytest.mark.parametrize("body", [v for w in OPTOUT_WORDS for v in _variants(w)])
def test_optout_keywords(body):
    assert classify_text(body) is Kind.OPTOUT


@pytest.mark.parametrize("body", [v for w in ("START", "UNSTOP", "YES") for v in _variants(w)])
def test_optin_keywords(body):
    assert classify_text(body) is Kind.OPTIN


@pytest.mark.parametrize("body", [v for w in ("HELP", "INFO") for v in _variants(w)])
def test_help_keywords(body):
    assert classify_text(body) is Kind.HELP


@pytest.mark.parametrize(
    "body",
    [
        "stop by tomorrow?",
        "Please stop",
        "STOP STOP",
        "yes please, call me",
        "opt out",
        "stopp",
        "Is it still for sale?",
        "",
        "   ",
        "¿Info about the condo?",
    ],
)
def test_other_messages_are_replies(body):
    assert classify_text(body) is Kind.REPLY


def test_punctuation_and_emoji_around_a_keyword_are_ignored():
    assert classify_text("¡Stop! 🙏") is Kind.OPTOUT
    assert classify_text('"help"') is Kind.HELP


# ---------------------------------------------------------------- a small world


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'c.db'}")
    yield s
    s.close()


@pytest.fixture
def world(store):
    """Ana is in `welcome` (stops on everything) and `news` (stops on bounce only)."""
    with store.write() as s:
        ana = Lead(email="ana@lead.example", phone="+639171234567", first_name="Ana")
        ben = Lead(email="Ben@Lead.example", phone="+639181112222")
        s.add_all([ana, ben])
        s.flush()
        assert ana.id
        assert ben.id
        s.add_all(
            [
                Enrolment(campaign="welcome", lead_id=ana.id, enrolled_at=SENT_AT),
                Enrolment(campaign="news", lead_id=ana.id, enrolled_at=SENT_AT),
                Enrolment(campaign="welcome", lead_id=ben.id, enrolled_at=SENT_AT),
            ]
        )

        def msg(campaign, step, i, channel, lead=ana, **kw):
            kw.setdefault("due_at", NOW + timedelta(days=i))
            return Message(
                campaign=campaign, step=step, step_index=i, lead_id=lead.id, channel=channel, **kw
            )

        s.add_all(
            [
                msg(
                    "welcome",
                    "hello",
                    0,
                    "email",
                    state="sent",
                    sent_at=SENT_AT,
                    message_id=HELLO_ID,
                    thread_id="thread-1",
                    provider_id="gm-1",
                    recipient="ana@lead.example",
                ),
                msg(
                    "welcome",
                    "text",
                    1,
                    "sms",
                    state="sent",
                    sent_at=SENT_AT,
                    provider_id="SM0001",
                    recipient="+639171234567",
                ),
                msg("welcome", "follow-up", 2, "email"),
                msg("welcome", "nudge", 3, "sms"),
                msg("news", "issue-1", 0, "email"),
                msg("news", "issue-1-sms", 1, "sms"),
                msg("welcome", "hello", 0, "email", lead=ben),
            ]
        )
    return store


def _known(store) -> Known:
    with store.read() as s:
        return load_known(s)


def _record(store, items):
    with store.write() as s:
        return record(s, [i for i in items if i is not None], stop_on=STOP_ON, now=NOW)


def _messages(store, email="ana@lead.example"):
    with store.read() as s:
        lead = find_lead(s, email)
        assert lead is not None
        rows = s.exec(select(Message).where(Message.lead_id == lead.id)).all()
        return {(m.campaign, m.step): m for m in rows}


def _enrolments(store, email="ana@lead.example"):
    with store.read() as s:
        lead = find_lead(s, email)
        assert lead is not None
        rows = s.exec(select(Enrolment).where(Enrolment.lead_id == lead.id)).all()
        return {e.campaign: (e.state, e.reason) for e in rows}


def _optouts(store):
    with store.read() as s:
        return {(o.lead_id, o.channel, o.source) for o in s.exec(select(OptOut)).all()}


def _events(store):
    with store.read() as s:
        return s.exec(select(Event).order_by(Event.id)).all()  # type: ignore[arg-type]


# ---------------------------------------------------------------- email


def _reply(
    *,
    frm="Ana Lead <ana@lead.example>",
    to="Ana Cruz <ana@sunrise.example>",
    subject="Re: Welcome, Ana!",
    body="Yes, I'd like to see the condo on Saturday.",
    in_reply_to: str | None = HELLO_ID,
    date=NOW - timedelta(hours=2),
    msgid="<reply-1@lead.example>",
    headers: dict[str, str] | None = None,
) -> bytes:
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = format_datetime(date)
    m["Message-ID"] = msgid
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    for k, v in (headers or {}).items():
        m[k] = v
    m.set_content(body + "\n\n> Welcome, Ana! ...\n")
    return m.as_bytes()


def _original() -> EmailMessage:
    o = EmailMessage()
    o["From"] = "Ana Cruz <ana@sunrise.example>"
    o["To"] = "ana@lead.example"
    o["Subject"] = "Welcome, Ana!"
    o["Message-ID"] = HELLO_ID
    o.set_content("Hi Ana!")
    return o


def _dsn(*, action="failed", status="5.1.1", attach="message/rfc822") -> bytes:
    """A delivery status notification as Gmail's and Postfix's mailer-daemons send them."""
    report = EmailMessage()
    report["From"] = "Mail Delivery Subsystem <mailer-daemon@googlemail.com>"
    report["To"] = "ana@sunrise.example"
    report["Subject"] = "Delivery Status Notification (Failure)"
    report["Date"] = format_datetime(NOW - timedelta(hours=20))
    report["Message-ID"] = "<dsn-1@mx.google.com>"
    report.set_content("Your message wasn't delivered to ana@lead.example.")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    # message/delivery-status holds header blocks: one per message, then one per recipient.
    per_message = message_from_string("Reporting-MTA: dns; googlemail.com\n\n", policy=default)
    per_recipient = message_from_string(
        "Final-Recipient: rfc822; ana@lead.example\n"
        f"Action: {action}\n"
        f"Status: {status}\n"
        "Diagnostic-Code: smtp; 550 5.1.1 The email account does not exist.\n\n",
        policy=default,
    )
    status_part = EmailMessage()
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    if attach == "message/rfc822":
        report.add_attachment(_original())
    else:
        headers = EmailMessage()
        headers.set_content(
            "".join(f"{k}: {v}\n" for k, v in _original().items()), subtype="rfc822-headers"
        )
        report.attach(headers)
    return report.as_bytes()


def test_a_reply_in_our_thread_stops_the_sequence(world):
    item = classify_email(_reply(), channel="email", ours=OURS, known=_known(world), now=NOW)
    assert item is not None
    assert (item.kind, item.channel, item.source_id) == (
        Kind.REPLY,
        "email",
        "reply:<reply-1@lead.example>",
    )
    before = _messages(world)
    done = _record(world, [item])
    assert done.events == {"reply": 1}
    assert done.stopped == 1
    assert _enrolments(world) == {"welcome": ("stopped", "reply"), "news": ("active", None)}
    after = _messages(world)
    assert after["welcome", "follow-up"].state == "skipped"
    assert after["welcome", "follow-up"].reason == "sequence stopped: reply"
    assert after["welcome", "nudge"].state == "skipped"
    # `news` does not stop on replies, and sent messages are history: both untouched.
    assert after["news", "issue-1"].state == "pending"
    assert after["news", "issue-1-sms"].state == "pending"
    for key in [("welcome", "hello"), ("welcome", "text")]:
        assert after[key].state == "sent"
        assert after[key].updated_at == before[key].updated_at
    # Ben's sequence is his own.
    assert _enrolments(world, "ben@lead.example") == {"welcome": ("active", None)}
    assert _optouts(world) == set()
    [event] = _events(world)
    assert event.kind == "reply"
    assert event.message_id == after["welcome", "hello"].id


def test_a_gmail_thread_id_finds_the_thread_without_headers(world):
    raw = _reply(in_reply_to=None)
    known = _known(world)
    assert classify_email(raw, channel="email", ours=OURS, known=known, now=NOW) is None
    item = classify_email(
        raw, channel="email", ours=OURS, known=known, now=NOW, thread_id="thread-1"
    )
    assert item is not None
    assert item.kind is Kind.REPLY


def test_our_addresses_come_from_the_sender(example_project):
    from campaignctl.config import load

    cfg = load(example_project / "campaigns.toml")
    assert our_addresses(cfg) == OURS


def test_mail_that_is_not_a_reply_to_us_is_ignored(world):
    known = _known(world)
    ours = _reply(frm="Ana Cruz <ANA@sunrise.example>")
    earlier = _reply(date=SENT_AT - timedelta(minutes=5))
    unrelated = _reply(in_reply_to="<someone-else@example.com>")
    for raw in (ours, earlier, unrelated):
        assert classify_email(raw, channel="email", ours=OURS, known=known, now=NOW) is None


def test_an_out_of_office_is_recorded_but_stops_nothing(world):
    raw = _reply(body="I am away until Monday.", headers={"Auto-Submitted": "auto-replied"})
    item = classify_email(raw, channel="email", ours=OURS, known=_known(world), now=NOW)
    assert item is not None
    assert item.kind is Kind.AUTOREPLY
    _record(world, [item])
    assert _enrolments(world)["welcome"] == ("active", None)
    assert _messages(world)["welcome", "follow-up"].state == "pending"


@pytest.mark.parametrize("attach", ["message/rfc822", "text/rfc822-headers"])
def test_a_bounce_suppresses_the_address_and_stops_sequences(world, attach):
    item = classify_email(
        _dsn(attach=attach), channel="email", ours=OURS, known=_known(world), now=NOW
    )
    assert item is not None
    assert item.kind is Kind.BOUNCE
    assert item.error_code == "5.1.1"
    done = _record(world, [item])
    assert done.events == {"bounce": 1}
    msgs = _messages(world)
    hello = msgs["welcome", "hello"]
    assert hello.state == "sent"  # the ledger never moves back
    assert hello.error_code == "5.1.1"
    assert "does not exist" in (hello.error or "")
    assert _optouts(world) == {(hello.lead_id, "email", "bounce")}
    # Both campaigns stop on bounce; every pending message of Ana's is skipped.
    assert _enrolments(world) == {
        "welcome": ("stopped", "bounce"),
        "news": ("stopped", "bounce"),
    }
    assert msgs["news", "issue-1"].state == "skipped"
    assert msgs["news", "issue-1"].reason == "bounced (email)"
    assert msgs["news", "issue-1-sms"].reason == "sequence stopped: bounce"


def test_a_delayed_dsn_is_not_a_bounce(world):
    raw = _dsn(action="delayed", status="4.4.7")
    assert classify_email(raw, channel="email", ours=OURS, known=_known(world), now=NOW) is None


def test_a_bounce_with_only_x_failed_recipients_finds_the_lead_by_address(world):
    m = EmailMessage()
    m["From"] = "MAILER-DAEMON@mx.sunrise.example"
    m["To"] = "ana@sunrise.example"
    m["Subject"] = "Undelivered Mail Returned to Sender"
    m["X-Failed-Recipients"] = "BEN@lead.example"
    m["Message-ID"] = "<bounce-2@mx.sunrise.example>"
    m.set_content("The mail system: <ben@lead.example>: host said: 550 no such user")
    item = classify_email(m.as_bytes(), channel="email", ours=OURS, known=_known(world), now=NOW)
    assert item is not None
    assert (item.kind, item.lead_id, item.address) == (Kind.BOUNCE, None, "ben@lead.example")
    _record(world, [item])
    assert _enrolments(world, "ben@lead.example") == {"welcome": ("stopped", "bounce")}
    assert {(c, s) for _l, c, s in _optouts(world)} == {("email", "bounce")}


def test_an_unsubscribe_reply_opts_out_of_email(world):
    raw = _reply(subject="Re: Welcome, Ana!", body="Unsubscribe")
    item = classify_email(raw, channel="email", ours=OURS, known=_known(world), now=NOW)
    assert item is not None
    assert (item.kind, item.channel, item.source) == (Kind.OPTOUT, "email", "unsubscribe")
    done = _record(world, [item])
    msgs = _messages(world)
    assert _optouts(world) == {(msgs["welcome", "hello"].lead_id, "email", "unsubscribe")}
    assert _enrolments(world) == {"welcome": ("stopped", "optout"), "news": ("active", None)}
    # `news` does not stop on optout: its email is skipped, its SMS still goes.
    # news goes on (it stops on bounces only): its email stays for the engine, which skips it
    # when it comes due and moves the sequence on; skipping it here stalled the sequence
    assert msgs["news", "issue-1"].state == "pending"
    assert msgs["news", "issue-1-sms"].state == "pending"
    assert msgs["welcome", "nudge"].reason == "sequence stopped: optout"
    assert done.skipped == 2


def test_an_html_only_unsubscribe_is_understood(world):
    m = EmailMessage()
    m["From"] = "ana@lead.example"
    m["To"] = "ana@sunrise.example"
    m["Subject"] = "=?utf-8?q?Re=3A_Welcome=2C_Ana!?="
    m["In-Reply-To"] = HELLO_ID
    m["Message-ID"] = "<html-unsub@lead.example>"
    m.set_content("<div dir='ltr'><b>Unsubscribe</b></div><blockquote>...</blockquote>", "html")
    item = classify_email(m.as_bytes(), channel="email", ours=OURS, known=_known(world), now=NOW)
    assert item is not None
    assert (item.kind, item.source) == (Kind.OPTOUT, "unsubscribe")


def test_a_message_to_the_list_unsubscribe_mailto_opts_out(world):
    # What a mail client sends for `List-Unsubscribe: <mailto:ana@sunrise.example?subject=...>`.
    raw = _reply(
        frm="ben@lead.example", subject="unsubscribe", body="", in_reply_to=None, msgid="<u@b>"
    )
    item = classify_email(raw, channel="email", ours=OURS, known=_known(world), now=NOW)
    assert item is not None
    assert (item.kind, item.lead_id, item.address) == (Kind.OPTOUT, None, "ben@lead.example")
    done = _record(world, [item])
    assert done.unknown_leads == 0
    assert _messages(world, "ben@lead.example")["welcome", "hello"].state == "skipped"
    assert _enrolments(world, "ben@lead.example") == {"welcome": ("stopped", "optout")}


# ---------------------------------------------------------------- Twilio


def _twilio(sid, *, direction="inbound", body="", status="received", error_code=None, **kw):
    return {
        "sid": sid,
        "from": kw.get("frm", "+639171234567"),
        "to": kw.get("to", "+15005550006"),
        "body": body,
        "direction": direction,
        "status": status,
        "error_code": error_code,
        "date_sent": "Fri, 20 Nov 2026 09:30:00 +0000",
    }


def test_an_sms_stop_opts_out_of_that_channel_only(world):
    known = _known(world)
    item = classify_twilio(_twilio("SMin1", body=" Stop. "), channel="sms", known=known, now=NOW)
    assert item is not None
    assert (item.kind, item.source_id, item.address) == (
        Kind.OPTOUT,
        "optout:SMin1",
        "+639171234567",
    )
    assert item.occurred_at == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    _record(world, [item])
    msgs = _messages(world)
    assert {(c, s) for _l, c, s in _optouts(world)} == {("sms", "keyword")}
    # news goes on: its SMS stays for the engine to skip when due (and move past)
    sms = msgs["news", "issue-1-sms"]
    assert (sms.state, sms.reason) == ("pending", None)
    assert msgs["news", "issue-1"].state == "pending"  # email still goes where stop_on allows
    assert _enrolments(world) == {"welcome": ("stopped", "optout"), "news": ("active", None)}


def test_whatsapp_sender_prefix_is_stripped(world):
    raw = _twilio("SMwa1", body="Is the condo still available?", frm="whatsapp:+639171234567")
    item = classify_twilio(raw, channel="whatsapp", known=_known(world), now=NOW)
    assert item is not None
    assert (item.kind, item.address) == (Kind.REPLY, "+639171234567")
    done = _record(world, [item])
    assert done.unknown_leads == 0
    assert _enrolments(world)["welcome"] == ("stopped", "reply")


def test_start_opts_back_in_but_keeps_a_manual_all_channels_optout(world):
    known = _known(world)
    stop = classify_twilio(_twilio("SMa", body="STOP"), channel="sms", known=known, now=NOW)
    _record(world, [stop])
    with world.read() as s:
        ana = find_lead(s, "ana@lead.example")
        assert ana is not None
        ana_id = ana.id
    assert ana_id is not None
    with world.write() as s:
        s.add(OptOut(lead_id=ana_id, channel="*", source="manual"))
    start = classify_twilio(_twilio("SMb", body="start"), channel="sms", known=known, now=NOW)
    assert start is not None
    assert start.kind is Kind.OPTIN
    _record(world, [start])
    assert _optouts(world) == {(ana_id, "*", "manual")}


def test_help_is_recorded_and_changes_nothing(world):
    item = classify_twilio(_twilio("SMh", body="info"), channel="sms", known=_known(world), now=NOW)
    assert item is not None
    done = _record(world, [item])
    assert done.events == {"help": 1}
    assert _enrolments(world)["welcome"] == ("active", None)
    assert _optouts(world) == set()


def test_delivery_statuses_of_our_sends(world):
    known = _known(world)
    out = "outbound-api"
    statuses = [
        _twilio("SM0001", direction=out, status="delivered"),
        _twilio("SM0001", direction=out, status="undelivered", error_code=30003),
    ]
    items = [classify_twilio(r, channel="sms", known=known, now=NOW) for r in statuses]
    assert [i.kind for i in items if i] == [Kind.DELIVERED, Kind.UNDELIVERED]
    # Not ours, or not final yet: nothing to record.
    assert classify_twilio(_twilio("SM9", direction=out, status="delivered"), channel="sms",
                           known=known, now=NOW) is None  # fmt: skip
    assert classify_twilio(_twilio("SM0001", direction=out, status="sent"), channel="sms",
                           known=known, now=NOW) is None  # fmt: skip
    done = _record(world, items)
    assert done.events == {"delivered": 1, "undelivered": 1}
    text = _messages(world)["welcome", "text"]
    assert (text.state, text.error_code) == ("sent", None)  # 30003 (phone off) is not permanent
    assert _enrolments(world)["welcome"] == ("active", None)


def test_a_failed_delivery_with_a_permanent_code_marks_the_message(world):
    known = _known(world)
    raw = _twilio("SM0001", direction="outbound-api", status="failed", error_code=30005)
    item = classify_twilio(raw, channel="sms", known=known, now=NOW)
    assert item is not None
    assert (item.kind, item.error_code, item.permanent) == (Kind.FAILED, "30005", True)
    _record(world, [item])
    text = _messages(world)["welcome", "text"]
    assert (text.state, text.error_code, text.error) == (
        "sent",
        "30005",
        "unknown destination handset",
    )
    assert [e.kind for e in _events(world)] == ["failed"]


def test_provider_unsubscribed_error_is_an_optout(world):
    raw = _twilio("SM0001", direction="outbound-api", status="undelivered", error_code=21610)
    item = classify_twilio(raw, channel="sms", known=_known(world), now=NOW)
    _record(world, [item])
    assert {(c, s) for _l, c, s in _optouts(world)} == {("sms", "provider")}
    assert _enrolments(world)["welcome"] == ("stopped", "optout")


def test_a_stop_from_an_unknown_number_is_recorded_without_effects(world):
    raw = _twilio("SMx", body="STOP", frm="+14155550100")
    done = _record(world, [classify_twilio(raw, channel="sms", known=_known(world), now=NOW)])
    assert (done.events, done.unknown_leads) == ({"optout": 1}, 1)
    assert _optouts(world) == set()
    [event] = _events(world)
    assert (event.lead_id, event.detail["address"]) == (None, "+14155550100")


# ---------------------------------------------------------------- idempotence and cursors


def test_a_second_sync_of_the_same_data_records_nothing(world):
    def batch():
        known = _known(world)
        return [
            classify_twilio(_twilio("SMs1", body="STOP"), channel="sms", known=known, now=NOW),
            classify_twilio(
                _twilio("SM0001", direction="outbound-api", status="delivered"),
                channel="sms",
                known=known,
                now=NOW,
            ),
            classify_email(_reply(), channel="email", ours=OURS, known=known, now=NOW),
            classify_email(_dsn(), channel="email", ours=OURS, known=known, now=NOW),
        ]

    first = _record(world, batch())
    assert first.total == 4
    snapshot = (
        [(e.kind, e.source_id) for e in _events(world)],
        _optouts(world),
        {k: (m.state, m.reason) for k, m in _messages(world).items()},
    )
    second = _record(world, batch())
    assert (second.total, second.duplicates, second.stopped, second.skipped) == (0, 4, 0, 0)
    assert snapshot == (
        [(e.kind, e.source_id) for e in _events(world)],
        _optouts(world),
        {k: (m.state, m.reason) for k, m in _messages(world).items()},
    )


def test_duplicates_within_one_batch_are_recorded_once(world):
    item = Inbound(Kind.HELP, "sms", "help:SMdup", NOW, address="+639171234567")
    done = _record(world, [item, item])
    assert (done.total, done.duplicates, len(_events(world))) == (1, 1, 1)


def test_sync_cursor_per_channel(store):
    with store.write() as s:
        assert get_cursor(s, "email") is None
        set_cursor(s, "email", "12345", NOW)
        set_cursor(s, "sms", "2026-11-20T10:00:00Z", NOW)
    with store.write() as s:
        set_cursor(s, "email", "12399", NOW + timedelta(minutes=5))
    with store.read() as s:
        assert (get_cursor(s, "email"), get_cursor(s, "sms")) == ("12399", "2026-11-20T10:00:00Z")


def test_find_lead_by_any_case_email_or_phone_format(world):
    with world.read() as s:
        ben = find_lead(s, "BEN@lead.EXAMPLE")
        assert ben is not None
        assert ben.email == "Ben@Lead.example"
        ana = find_lead(s, "0917 123 4567", "PH")
        assert ana is not None
        assert ana.first_name == "Ana"
        assert find_lead(s, "whatsapp:+639171234567") is not None
        assert find_lead(s, "not a number") is None


def test_known_refs_point_at_message_rows(world):
    known = _known(world)
    assert isinstance(known.by_rfc_id[HELLO_ID], SentRef)
    assert known.by_thread["thread-1"] == known.by_rfc_id[HELLO_ID]
    assert known.by_provider_id["SM0001"].channel == "sms"
    assert "gm-1" in known.by_provider_id
