"""Twilio's webhooks (`/twilio/status`, `/twilio/inbound`): signatures by twilio's own
`RequestValidator`, statuses that only move forward, events recorded once whether the webhook
or `sync` sees them first, and inbound keywords through the same path as `sync`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from sqlmodel import col, select
from twilio.request_validator import RequestValidator

from campaignctl.store import Enrolment, Event, Message, OptOut, Store
from tests.fakes.twilio import AUTH_TOKEN, FakeTwilio
from tests.support import add_leads, open_store, write_project
from tests.support.cli import Cli
from tests.support.web import BASE_URL, ENV, WebRig, serve_process, server_section, web_rig

OUR_SMS = "+15005550006"
OUR_WA = "whatsapp:+14155238886"
WA_TOKEN = "whatsapp-account-token-0123456789"  # a test value

CAMPAIGN = """
[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name }}, reply STOP to opt out."

[[campaigns.welcome.steps]]
name = "nudge"
channel = "sms"
delay = "1d"
body = "Still there, {{ lead.first_name }}?"
"""


def _phone(i: int) -> str:
    return f"+1212555{i:04d}"


@pytest.fixture
def world(
    tmp_path: Path, fake_twilio: FakeTwilio, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, FakeTwilio]:
    """4 leads who each got the hello SMS through the fake Twilio, with `[server]`; the
    WhatsApp channel is on another account (its own auth token)."""
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("WA_TWILIO_TOKEN", WA_TOKEN)
    write_project(
        tmp_path,
        f"""\
[channels.sms]
provider = "twilio"
from = "{OUR_SMS}"
api_base = "{fake_twilio.url}"

[channels.whatsapp]
provider = "twilio"
from = "{OUR_WA}"
api_base = "{fake_twilio.url}"
auth_token_env = "WA_TWILIO_TOKEN"

{server_section()}""",
        CAMPAIGN,
    )
    add_leads(tmp_path, 4)
    res = cli("-C", tmp_path, "send", "--quiet")
    assert res.exit_code == 0, res.stderr
    assert len(fake_twilio.created) == 4
    return tmp_path, fake_twilio


def signed(
    path: str, form: dict[str, str], *, token: str = AUTH_TOKEN, url: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body Twilio would POST to `path`, and its headers, signed over the URL (`url`,
    default: the public one) and the params the body holds."""
    body = urlencode(form).encode()
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    signature = RequestValidator(token).compute_signature(url or BASE_URL + path, params)
    return body, {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature,
    }


def post(rig: WebRig, path: str, form: dict[str, str], **kw: Any) -> Any:
    body, headers = signed(path, form, **kw)
    return rig.client.post(path, content=body, headers=headers)


def status_form(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "0" * 31 + "1",
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "From": OUR_SMS,
        "To": _phone(0),
        "ApiVersion": "2010-04-01",
        **extra,
    }


def inbound_form(sid: str, from_: str, body: str, to: str = OUR_SMS) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "0" * 31 + "1",
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "From": from_,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


@contextmanager
def rig(folder: Path) -> Iterator[WebRig]:
    with web_rig(folder) as r:
        yield r


def _events(store: Store) -> list[Event]:
    with store.read() as s:
        return list(s.exec(select(Event).order_by(col(Event.id))))


def _hello(store: Store) -> list[Message]:
    with store.read() as s:
        q = select(Message).where(Message.step == "hello").order_by(col(Message.id))
        return list(s.exec(q))


def sid(m: Message) -> str:
    assert m.provider_id is not None
    return m.provider_id


def _step_status(cli: Cli, folder: Path) -> dict[str, Any]:
    res = cli("-C", folder, "status", "--format", "json")
    assert res.exit_code == 0, res.stderr
    step: dict[str, Any] = json.loads(res.stdout)["campaigns"][0]["steps"][0]
    return step


# ---------------------------------------------------------------- signatures


def test_unsigned_tampered_or_misaddressed_requests_are_refused_and_write_nothing(world):
    folder, _fake = world
    with rig(folder) as r:
        sid = _hello(r.store)[0].provider_id
        assert sid
        form = status_form(sid, "delivered")
        body, headers = signed("/twilio/status", form)

        tampered = body.replace(b"delivered", b"undelivered")
        assert r.client.post("/twilio/status", content=tampered, headers=headers).status_code == 403
        unsigned = {"content-type": headers["content-type"]}
        assert r.client.post("/twilio/status", content=body, headers=unsigned).status_code == 403
        for url in ("https://evil.example/twilio/status", BASE_URL + "/twilio/inbound"):
            other = post(r, "/twilio/status", form, url=url)
            assert other.status_code == 403, url
        assert post(r, "/twilio/status", form, token="some-other-token-xyz").status_code == 403
        # the Host header a proxy forwards does not count: only public_base_url does
        local = post(r, "/twilio/status", form, url="http://testserver/twilio/status")
        assert local.status_code == 403
        stop = inbound_form("MM" + "1" * 32, _phone(1), "STOP")
        body, headers = signed("/twilio/inbound", stop)
        res = r.client.post("/twilio/inbound", content=body + b"x", headers=headers)
        assert res.status_code == 403
        assert _events(r.store) == []
        with r.store.read() as s:
            assert list(s.exec(select(OptOut))) == []

        assert r.client.post("/twilio/status", content=body, headers=headers).status_code == 403
        ok = post(r, "/twilio/status", form)
        assert ok.status_code == 204
        assert [(e.kind, e.source_id) for e in _events(r.store)] == [
            ("delivered", f"delivered:{sid}")
        ]


def test_a_channel_on_another_account_is_verified_with_its_own_token(world):
    folder, _fake = world
    with rig(folder) as r:
        form = inbound_form("MM" + "2" * 32, f"whatsapp:{_phone(2)}", "stop", to=OUR_WA)
        assert post(r, "/twilio/inbound", form).status_code == 403  # the SMS account's token
        assert post(r, "/twilio/inbound", form, token=WA_TOKEN).status_code == 200
        with r.store.read() as s:
            opted = [(o.lead_id, o.channel) for o in s.exec(select(OptOut))]
    lead = _hello(open_store(folder))[2].lead_id
    assert opted == [(lead, "whatsapp")]  # the channel by the To number


# ---------------------------------------------------------------- statuses


def test_a_status_only_moves_forward(world, cli):
    folder, _fake = world
    with rig(folder) as r:
        m0, m1, m2, _ = _hello(r.store)
        res = post(r, "/twilio/status", status_form(sid(m0), "delivered"))
        assert res.status_code == 204
        for late in ("sent", "queued", "sending"):
            res = post(r, "/twilio/status", status_form(sid(m0), late))
            assert res.status_code == 204
        # read, then a late delivered: read stays (and read is an event of its own)
        post(r, "/twilio/status", status_form(sid(m1), "read"))
        post(r, "/twilio/status", status_form(sid(m1), "delivered"))
        # undelivered is final
        post(r, "/twilio/status", status_form(sid(m2), "undelivered", ErrorCode="30005"))
        post(r, "/twilio/status", status_form(sid(m2), "delivered"))
        assert [(e.message_id, e.source_id) for e in _events(r.store)] == [
            (m0.id, f"delivered:{m0.provider_id}"),
            (m1.id, f"read:{m1.provider_id}"),
            (m2.id, f"undelivered:{m2.provider_id}"),
        ]
    step = _step_status(cli, folder)
    assert (step["delivered"], step["read"], step["undelivered"]) == (1, 1, 1)
    with open_store(folder).read() as s:
        m2_after = s.get(Message, m2.id)
        assert m2_after is not None
        assert m2_after.error_code == "30005"


def test_the_same_status_by_webhook_and_by_sync_is_one_event(world, cli):
    folder, fake = world
    with rig(folder) as r:
        m0, m1, _, _ = _hello(r.store)
        post(r, "/twilio/status", status_form(sid(m0), "delivered"))
        fake.set_status(sid(m0), "delivered")
        fake.set_status(sid(m1), "read")
        res = cli("-C", folder, "sync", "--channel", "sms", "--format", "json")
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)["channels"][0]
        assert doc["events"] == {"delivered": 1}  # m1's read; m0's delivered was recorded
        assert doc["duplicates"] == 1
        # and the other way round: sync saw m1 read; its late delivered callback changes nothing
        post(r, "/twilio/status", status_form(sid(m1), "delivered"))
        post(r, "/twilio/status", status_form(sid(m1), "read"))
        events = _events(r.store)
    assert [e.source_id for e in events] == [
        f"delivered:{m0.provider_id}",
        f"read:{m1.provider_id}",
    ]
    step = _step_status(cli, folder)
    assert (step["delivered"], step["read"]) == (1, 1)


# ---------------------------------------------------------------- inbound


def test_inbound_stop_opts_out_and_skips_pending_sms_and_start_opts_back_in(world):
    folder, fake = world
    with rig(folder) as r:
        lead = _hello(r.store)[1].lead_id
        with r.store.read() as s:
            pending = list(s.exec(select(Message).where(Message.lead_id == lead)))
        assert [m.state for m in pending if m.step == "nudge"] == ["pending"]

        res = post(r, "/twilio/inbound", inbound_form("MM" + "3" * 32, _phone(1), " Stop! "))
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/xml")
        assert "<Response/>" in res.text
        with r.store.read() as s:
            opted = [(o.lead_id, o.channel, o.source) for o in s.exec(select(OptOut))]
            nudge = s.exec(
                select(Message).where(Message.lead_id == lead, Message.step == "nudge")
            ).one()
            enrolment = s.exec(select(Enrolment).where(Enrolment.lead_id == lead)).one()
        assert opted == [(lead, "sms", "keyword")]
        assert nudge.state == "skipped"
        assert enrolment.state == "stopped"

        res = post(r, "/twilio/inbound", inbound_form("MM" + "4" * 32, _phone(1), "START"))
        assert res.status_code == 200
        with r.store.read() as s:
            assert list(s.exec(select(OptOut))) == []
        kinds = [e.kind for e in _events(r.store)]
    assert kinds == ["optout", "optin"]
    assert fake.created  # untouched by the webhooks


def test_a_reply_stops_the_sequence_and_sync_records_it_once(world, cli):
    folder, fake = world
    received = fake.receive(_phone(3), OUR_SMS, "Is the flat still available?")
    with rig(folder) as r:
        lead = _hello(r.store)[3].lead_id
        form = inbound_form(received["sid"], _phone(3), received["body"])
        assert post(r, "/twilio/inbound", form).status_code == 200
        with r.store.read() as s:
            enrolment = s.exec(select(Enrolment).where(Enrolment.lead_id == lead)).one()
            nudge = s.exec(
                select(Message).where(Message.lead_id == lead, Message.step == "nudge")
            ).one()
        assert (enrolment.state, enrolment.reason) == ("stopped", "reply")
        assert nudge.state == "skipped"
    res = cli("-C", folder, "sync", "--channel", "sms", "--format", "json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["channels"][0]["events"] == {}
    events = _events(open_store(folder))
    assert [(e.kind, e.lead_id, e.source_id) for e in events] == [
        ("reply", lead, f"reply:{received['sid']}")
    ]


# ---------------------------------------------------------------- send and a real server


def test_send_asks_twilio_for_status_callbacks_to_the_server(world, tmp_path):
    _folder, fake = world
    assert {f.get("StatusCallback") for f in fake.created} == {BASE_URL + "/twilio/status"}


def test_an_explicit_status_callback_is_kept(twilio_project, fake_twilio, cli, monkeypatch):
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    with (twilio_project / "campaigns.toml").open("a") as f:
        f.write("\n" + server_section() + CAMPAIGN)
    add_leads(twilio_project, 1)
    res = cli("-C", twilio_project, "send", "--quiet")
    assert res.exit_code == 0, res.stderr
    assert [f.get("StatusCallback") for f in fake_twilio.created] == [
        "https://sunrise.example/twilio/status"
    ]


def test_webhooks_through_a_real_uvicorn(world):
    folder, _fake = world
    sid = _hello(open_store(folder))[0].provider_id
    assert sid
    with serve_process(folder) as (_proc, url):
        body, headers = signed("/twilio/status", status_form(sid, "delivered"))
        res = httpx.post(f"{url}/twilio/status", content=body, headers=headers, timeout=10)
        assert res.status_code == 204
        res = httpx.post(
            f"{url}/twilio/status", content=body.replace(b"delivered", b"read"), headers=headers
        )
        assert res.status_code == 403
        body, headers = signed("/twilio/inbound", inbound_form("MM" + "5" * 32, _phone(2), "STOP"))
        res = httpx.post(f"{url}/twilio/inbound", content=body, headers=headers, timeout=10)
        assert res.status_code == 200
        assert "<Response/>" in res.text
    store = open_store(folder)
    assert [e.kind for e in _events(store)] == ["delivered", "optout"]


def test_check_warns_when_serve_could_not_verify_a_channels_webhooks(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
):
    """With `[server]`, a Twilio channel's auth token signs its webhooks: without it `serve`
    refuses them (403), so `check` says so, at the channel's key (sending may still work with
    an API key). A thread runs meanwhile, so `check`'s worker comes from a forkserver started
    earlier: it must still see this environment as it is now, not as it was then."""
    import threading

    done = threading.Event()
    waiting = threading.Thread(target=done.wait, daemon=True)
    waiting.start()
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("WA_TWILIO_TOKEN", raising=False)
    channels = f"""\
[channels.whatsapp]
provider = "twilio"
from = "{OUR_WA}"
auth_token_env = "WA_TWILIO_TOKEN"
"""
    write_project(tmp_path, channels + server_section(), CAMPAIGN.replace('"sms"', '"whatsapp"'))

    def token_problems() -> list[dict[str, str]]:
        res = cli("-C", tmp_path, "check", "--format", "json")
        problems = json.loads(res.stdout)["problems"]
        return [p for p in problems if p["path"].endswith("auth_token_env")]

    [problem] = token_problems()
    assert problem["path"] == "channels.whatsapp.auth_token_env"
    assert problem["severity"] == "warning"
    assert "WA_TWILIO_TOKEN is not set" in problem["message"]
    assert "refuses them" in problem["message"]
    monkeypatch.setenv("WA_TWILIO_TOKEN", WA_TOKEN)
    assert token_problems() == []
    # without [server] there are no webhooks to verify
    monkeypatch.delenv("WA_TWILIO_TOKEN")
    write_project(tmp_path, channels, CAMPAIGN.replace('"sms"', '"whatsapp"'))
    assert token_problems() == []
    done.set()
    waiting.join()
