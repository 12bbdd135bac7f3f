"""The Twilio channel through twilio.rest.Client, over HTTP to the loopback fake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from campaignctl.channels import ChannelError, ErrorKind, Reconciled, open_channel
from campaignctl.config import load
from tests.fakes.http import free_port
from tests.fakes.twilio import API_KEY_SECRET, AUTH_TOKEN, FakeTwilio
from tests.support import outgoing, write_project

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def sms(**overrides):
    fields = {
        "channel": "sms",
        "kind": "sms",
        "to": "+639171234567",
        "text": "Hi Juan, Ana from Sunrise here. Reply STOP to opt out.",
        "html": None,
        "subject": None,
        "rfc_message_id": None,
        "claimed_at": NOW,
    }
    return outgoing(**{**fields, **overrides})


@pytest.fixture
def clocked(fake_twilio: FakeTwilio) -> FakeTwilio:
    fake_twilio.clock = lambda: NOW
    return fake_twilio


def _open(project, name="sms"):
    return open_channel(load(project / "campaigns.toml"), name)


def test_create_sends_the_form_fields(twilio_project, clocked):
    ch = _open(twilio_project)
    sent = ch.send(sms())
    (form,) = clocked.created
    assert form == {
        "To": "+639171234567",
        "From": "+15005550006",
        "Body": "Hi Juan, Ana from Sunrise here. Reply STOP to opt out.",
        "StatusCallback": "https://sunrise.example/twilio/status",
    }
    assert sent.provider_id == clocked.messages[0]["sid"]
    # basic auth with the account SID and token from the environment, on the api_base host
    (req,) = clocked.http.requests
    assert req.path == f"/2010-04-01/Accounts/{clocked.account_sid}/Messages.json"
    ch.close()


def test_api_key_credentials(twilio_project, clocked, monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    for var, value in clocked.env(api_key=True).items():
        monkeypatch.setenv(var, value)
    sent = _open(twilio_project).send(sms())
    assert sent.provider_id.startswith("SM")


def test_reconcile_lists_by_to_from_and_date_sent(twilio_project, clocked):
    ch = _open(twilio_project)
    msg = sms()
    sent = ch.send(msg)
    found = ch.reconcile(msg)
    assert found.outcome is Reconciled.SENT
    assert found.provider_id == sent.provider_id
    listing = next(r for r in clocked.http.requests if r.method == "GET")
    assert listing.arg("To") == "+639171234567"
    assert listing.arg("From") == "+15005550006"
    assert listing.arg("DateSent>") == "2026-11-21T00:00:00Z"

    other = sms(id=2, text="A different body")
    assert ch.reconcile(other).outcome is Reconciled.NOT_SENT


def test_reconcile_finds_a_message_still_queued(twilio_project, clocked):
    clocked.hold_queue = True  # no date_sent yet: the DateSent filter cannot see it
    ch = _open(twilio_project)
    msg = sms()
    sent = ch.send(msg)
    found = ch.reconcile(msg)
    assert (found.outcome, found.provider_id) == (Reconciled.SENT, sent.provider_id)


def test_reconcile_ignores_an_older_identical_message(twilio_project, clocked):
    ch = _open(twilio_project)
    clocked.clock = lambda: NOW - timedelta(days=3)
    ch.send(sms())
    clocked.clock = lambda: NOW
    assert ch.reconcile(sms(id=2)).outcome is Reconciled.NOT_SENT


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, 21211, ErrorKind.PERMANENT),
        (400, 21614, ErrorKind.PERMANENT),
        (400, 30006, ErrorKind.PERMANENT),
        (400, 21610, ErrorKind.OPTED_OUT),
        (429, 20429, ErrorKind.TRANSIENT),
        (429, None, ErrorKind.TRANSIENT),
        (503, None, ErrorKind.TRANSIENT),
    ],
)
def test_error_codes(twilio_project, clocked, status, code, kind):
    clocked.fail_next(status, code)
    with pytest.raises(ChannelError) as caught:
        _open(twilio_project).send(sms())
    assert caught.value.kind is kind
    assert caught.value.code == str(code or status)
    assert clocked.created == []  # one attempt only: the client does not retry


def test_invalid_number_from_the_fake_validation(twilio_project, clocked):
    with pytest.raises(ChannelError) as caught:
        _open(twilio_project).send(sms(to="+12"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.PERMANENT, "21211")
    assert "Invalid 'To' Phone Number" in caught.value.message


def test_opted_out_recipient(twilio_project, clocked):
    clocked.receive("+639171234567", "+15005550006", "STOP")
    with pytest.raises(ChannelError) as caught:
        _open(twilio_project).send(sms())
    assert caught.value.kind is ErrorKind.OPTED_OUT
    assert caught.value.exit_code == 1


def test_bad_credentials_are_an_auth_error_without_the_token(twilio_project, clocked, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong-token-value")
    with pytest.raises(ChannelError) as caught:
        _open(twilio_project).send(sms())
    exc = caught.value
    assert (exc.kind, exc.code, exc.exit_code) == (ErrorKind.AUTH, "20003", 78)
    assert "campaignctl auth twilio" in (exc.hint or "")
    for secret in ("wrong-token-value", AUTH_TOKEN, API_KEY_SECRET):
        assert secret not in f"{exc.message} {exc.hint}"


def test_missing_environment_names_the_variable(twilio_project, clocked, monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    with pytest.raises(ChannelError) as caught:
        _open(twilio_project)
    assert caught.value.kind is ErrorKind.AUTH
    assert "TWILIO_AUTH_TOKEN is not set" in caught.value.message


def test_whatsapp_prefix_on_both_ends_and_the_24h_window(twilio_project, clocked):
    ch = _open(twilio_project, "whatsapp")
    msg = sms(channel="whatsapp", kind="whatsapp", text="Hi Juan!")
    with pytest.raises(ChannelError) as caught:
        ch.send(msg)
    assert (caught.value.kind, caught.value.code) == (ErrorKind.PERMANENT, "63016")
    assert caught.value.hint == "outside the 24 h window: use a template (content_sid)"

    clocked.receive("whatsapp:+639171234567", "whatsapp:+14155238886", "Hello?")
    ch.send(msg)
    (form,) = clocked.created
    assert (form["To"], form["From"]) == ("whatsapp:+639171234567", "whatsapp:+14155238886")
    assert ch.reconcile(msg).outcome is Reconciled.SENT


def test_whatsapp_template_sends_content_sid_and_json_variables(twilio_project, clocked):
    ch = _open(twilio_project, "whatsapp")
    msg = sms(
        channel="whatsapp",
        kind="whatsapp",
        content_sid="HX0123456789abcdef0123456789abcdef",
        content_variables={"1": "Juan", "2": "Makati"},
    )
    sent = ch.send(msg)
    (form,) = clocked.created
    assert form["ContentSid"] == "HX0123456789abcdef0123456789abcdef"
    assert json.loads(form["ContentVariables"]) == {"1": "Juan", "2": "Makati"}
    assert "Body" not in form
    found = ch.reconcile(msg)
    assert (found.outcome, found.provider_id) == (Reconciled.SENT, sent.provider_id)


def test_messaging_service_sid(tmp_path, clocked):
    write_project(
        tmp_path,
        f'[channels.sms]\nprovider = "twilio"\nmessaging_service_sid = "MG{"0" * 32}"\n'
        f'api_base = "{clocked.url}"\n',
    )
    _open(tmp_path).send(sms())
    (form,) = clocked.created
    assert form["MessagingServiceSid"] == "MG" + "0" * 32
    assert "From" not in form


def test_unreachable_api_is_transient(tmp_path, clocked):
    port = free_port()
    write_project(
        tmp_path,
        f'[channels.sms]\nprovider = "twilio"\nfrom = "+15005550006"\n'
        f'api_base = "http://127.0.0.1:{port}"\n',
    )
    with pytest.raises(ChannelError) as caught:
        _open(tmp_path).send(sms())
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.maybe_sent is False


def test_fake_lists_inbound_messages_for_sync(twilio_project, clocked):
    """What inbound sync will use: inbound messages listed by To and DateSent."""
    from twilio.rest import Client

    from campaignctl.channels.twilio import ApiBaseHttpClient

    clocked.receive("+639171234567", "+15005550006", "Yes please, call me")
    client = Client(clocked.account_sid, AUTH_TOKEN, http_client=ApiBaseHttpClient(clocked.url))
    (reply,) = client.messages.list(to="+15005550006", date_sent_after=NOW - timedelta(days=1))
    assert (reply.direction, reply.body, reply.from_) == (
        "inbound",
        "Yes please, call me",
        "+639171234567",
    )
    assert reply.date_sent == NOW


def test_reconcile_without_a_body_cannot_tell(twilio_project, clocked):
    """With no text to match, any message to the lead would look like ours: unknown."""
    ch = _open(twilio_project)
    ch.send(sms())
    assert ch.reconcile(sms(id=2, text="")).outcome is Reconciled.UNKNOWN


def test_reconcile_many_reads_a_bounded_number_of_pages_and_guesses_nothing_beyond(
    twilio_project, clocked, monkeypatch
):
    """Review of issue 9 #5: after a long outage the listing since the oldest lost claim can
    be days of traffic. A call reads at most RECONCILE_MAX_PAGES pages; a lost message older
    than what was read stays unknown (never "not sent": that would send it twice)."""
    from campaignctl.channels import twilio

    monkeypatch.setattr(twilio, "RECONCILE_MAX_PAGES", 2)
    monkeypatch.setattr(twilio, "RECONCILE_PAGE_SIZE", 3)
    ch = _open(twilio_project)
    clocked.clock = lambda: NOW - timedelta(hours=2)
    old = sms(id=1, text="The oldest one", claimed_at=NOW - timedelta(hours=2))
    ch.send(old)
    for i in range(10):  # traffic after it, newer than the old one
        clocked.clock = lambda i=i: NOW - timedelta(minutes=50 - i)
        ch.send(sms(id=100 + i, to=f"+6391712340{i:02d}", text=f"Other {i}"))
    clocked.clock = lambda: NOW
    new = sms(id=2, text="The newest one")
    sent = ch.send(new)
    never = sms(id=3, text="Claimed, never sent")
    ancient = sms(id=4, text="From before give_up_after", claimed_at=NOW - timedelta(days=4))
    clocked.http.requests.clear()

    answers = ch.reconcile_many([ancient, old, new, never])

    listings = [r for r in clocked.http.requests if r.method == "GET" and r.arg("DateSent>")]
    assert len(listings) == 2  # the cap, not the 4 pages there are
    # the claim from before give_up_after (3 days) does not stretch the window back 4 days
    assert listings[0].arg("DateSent>") == "2026-11-21T05:50:00Z"
    assert (answers[2].outcome, answers[2].provider_id) == (Reconciled.SENT, sent.provider_id)
    assert answers[3].outcome is Reconciled.NOT_SENT  # its time was read: truly not there
    assert answers[1].outcome is Reconciled.UNKNOWN  # not reached: asked again next pass
    assert answers[4].outcome is Reconciled.UNKNOWN
    ch.close()
