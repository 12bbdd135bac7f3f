"""A fake Twilio REST API (2010-04-01 Messages and Accounts) on loopback.

Serves, under `url` (the channel's `api_base`), with HTTP basic auth (account SID + auth token,
or API key SID + secret) checked like Twilio (401, code 20003):
- `POST /2010-04-01/Accounts/{sid}/Messages.json`: validates To/From like Twilio (21211,
  21910 for a WhatsApp/SMS mix, 21602, 21603), refuses opted-out numbers (21610) and WhatsApp
  free text outside the 24 h session window (63016, see `enforce_whatsapp_window`);
- `GET  /2010-04-01/Accounts/{sid}/Messages.json`: filters To, From, DateSent, DateSent<=,
  DateSent>=, newest first, paged by PageSize/Page;
- `GET  /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json` and `GET .../Accounts/{sid}.json`.

Tests steer it: `fail_next(status, code)` queues errors, `opted_out` holds numbers that sent
STOP, `receive(...)` injects an inbound message, `set_status(...)` moves a message to delivered
or undelivered, `hold_queue` keeps new messages queued (no date_sent) as a busy queue would,
`on_create` runs before a create's answer (a status callback that beats it).
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from tests.fakes.http import LoopbackHTTP, Request, Response

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"  # a test value
API_KEY_SID = "SK" + "0" * 31 + "2"
API_KEY_SECRET = "fake-api-secret-fedcba9876543210"  # a test value
E164 = re.compile(r"\+[1-9]\d{6,14}")
ERRORS = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    21211: (400, "Invalid 'To' Phone Number"),
    21602: (400, "Message body is required."),
    21603: (400, "The 'From' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21910: (400, "Invalid From and To pair. From and To should be of the same channel"),
    30005: (400, "Unknown destination handset"),
    30006: (400, "Landline or unreachable carrier"),
    63016: (
        400,
        "Failed to send freeform message because you are outside the allowed window. "
        "If you want to send messages outside this window, you need to use a pre-approved "
        "message template.",
    ),
}


@dataclass
class _Failure:
    status: int
    code: int | None
    message: str
    method: str | None
    path: str
    times: int


def _date(d: datetime | None) -> str | None:
    return format_datetime(d.astimezone(UTC), usegmt=False) if d else None


def _parse_day(value: str) -> datetime:
    """Twilio accepts YYYY-MM-DD; the Python client sends YYYY-MM-DDTHH:MM:SSZ."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=UTC)


class FakeTwilio:
    """One Twilio account with its messages."""

    def __init__(self) -> None:
        self.account_sid = ACCOUNT_SID
        self.auth_token = AUTH_TOKEN
        self.api_keys = {API_KEY_SID: API_KEY_SECRET}
        self.friendly_name = "Sunrise Realty"
        self.status = "active"
        self.messages: list[dict[str, Any]] = []  # oldest first
        self.created: list[dict[str, str]] = []  # the form of every accepted create
        self.opted_out: set[str] = set()
        self.enforce_whatsapp_window = True
        self.hold_queue = False
        self.clock = lambda: datetime.now(UTC)
        #: called with each message it accepts, before its answer leaves (a status callback
        #: Twilio sends before the sender has even read the sid)
        self.on_create: Callable[[dict[str, Any]], None] | None = None
        self._failures: list[_Failure] = []
        self._sids = itertools.count(1)
        self.http = LoopbackHTTP(self._handle)

    @property
    def url(self) -> str:
        return self.http.url

    def env(self, *, api_key: bool = False) -> dict[str, str]:
        """Environment variables that authenticate against this fake."""
        env = {"TWILIO_ACCOUNT_SID": self.account_sid}
        if api_key:
            sid, secret = next(iter(self.api_keys.items()))
            env.update(TWILIO_API_KEY=sid, TWILIO_API_SECRET=secret)
        else:
            env["TWILIO_AUTH_TOKEN"] = self.auth_token
        return env

    def fail_next(
        self,
        status: int,
        code: int | None = None,
        message: str = "",
        *,
        method: str | None = "POST",
        path: str = "/Messages",
        times: int = 1,
    ) -> None:
        """The next `times` matching requests get this Twilio error."""
        message = message or ERRORS.get(code or 0, (status, f"fake error {status}"))[1]
        self._failures.append(_Failure(status, code, message, method, path, times))

    def receive(
        self, from_: str, to: str, body: str, *, when: datetime | None = None
    ) -> dict[str, Any]:
        """An inbound message from a lead (a reply, STOP); opens the WhatsApp window."""
        when = when or self.clock()
        msg = self._new(to=to, from_=from_, body=body, direction="inbound", when=when)
        msg.update(status="received", date_sent=when)
        if body.strip().upper() in {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}:
            self.opted_out.add(from_.removeprefix("whatsapp:"))
        return msg

    def set_status(self, sid: str, status: str, error_code: int | None = None) -> None:
        for m in self.messages:
            if m["sid"] == sid:
                m["status"] = status
                m["error_code"] = error_code
                m["date_updated"] = self.clock()
                if m["date_sent"] is None and status in ("sent", "delivered", "undelivered"):
                    m["date_sent"] = self.clock()
                return
        raise KeyError(sid)

    # ------------------------------------------------------------------ storage and rendering

    def _new(
        self, *, to: str, from_: str, body: str, direction: str, when: datetime
    ) -> dict[str, Any]:
        n = next(self._sids)
        msg: dict[str, Any] = {
            "sid": f"{'SM' if direction != 'inbound' else 'MM'}{n:032x}",
            "to": to,
            "from": from_,
            "body": body,
            "direction": direction,
            "status": "queued",
            "date_created": when,
            "date_updated": when,
            "date_sent": None,
            "messaging_service_sid": None,
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
            "content_sid": None,
        }
        self.messages.append(msg)
        return msg

    def _json(self, m: dict[str, Any]) -> dict[str, Any]:
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m['sid']}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": m["body"],
            "date_created": _date(m["date_created"]),
            "date_sent": _date(m["date_sent"]),
            "date_updated": _date(m["date_updated"]),
            "direction": m["direction"],
            "error_code": m["error_code"],
            "error_message": m["error_message"],
            "from": m["from"],
            "messaging_service_sid": m["messaging_service_sid"],
            "num_media": "0",
            "num_segments": m["num_segments"],
            "price": None,
            "price_unit": "USD",
            "sid": m["sid"],
            "status": m["status"],
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": m["to"],
            "uri": f"{base}.json",
        }

    def _error(self, status: int, code: int | None, message: str) -> Response:
        body: dict[str, Any] = {"status": status, "message": message}
        if code:
            body.update(code=code, more_info=f"https://www.twilio.com/docs/errors/{code}")
        return Response(status, body)

    # ------------------------------------------------------------------ HTTP

    def _authorized(self, req: Request, account: str) -> bool:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
        if account != self.account_sid:
            return False
        if user == self.account_sid:
            return password == self.auth_token
        return self.api_keys.get(user) == password

    def _handle(self, req: Request) -> Response:
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/.]+)(\.json|/.*)", req.path)
        if not m:
            return self._error(404, 20404, f"The requested resource {req.path} was not found")
        if not self._authorized(req, m.group(1)):
            return self._error(401, 20003, "Authenticate")
        for f in self._failures:
            if f.path in req.path and (f.method is None or f.method == req.method):
                f.times -= 1
                if f.times <= 0:
                    self._failures.remove(f)
                return self._error(f.status, f.code, f.message)
        rest = m.group(2)
        if rest == ".json" and req.method == "GET":
            return Response(
                200,
                {
                    "sid": self.account_sid,
                    "friendly_name": self.friendly_name,
                    "status": self.status,
                    "type": "Full",
                    "date_created": _date(datetime(2024, 1, 1, tzinfo=UTC)),
                    "uri": f"/2010-04-01/Accounts/{self.account_sid}.json",
                },
            )
        if rest == "/Messages.json" and req.method == "POST":
            return self._create(req)
        if rest == "/Messages.json" and req.method == "GET":
            return self._list(req)
        mm = re.fullmatch(r"/Messages/([A-Z]{2}[0-9a-f]{32})\.json", rest)
        if mm and req.method == "GET":
            for msg in self.messages:
                if msg["sid"] == mm.group(1):
                    return Response(200, self._json(msg))
        return self._error(404, 20404, f"The requested resource {req.path} was not found")

    def _create(self, req: Request) -> Response:
        form = {k: v[0] for k, v in req.form().items()}
        to, from_ = form.get("To", ""), form.get("From", "")
        service = form.get("MessagingServiceSid")

        def err(code: int) -> Response:
            status, message = ERRORS[code]
            return self._error(status, code, message)

        if not from_ and not service:
            return err(21603)
        if not form.get("Body") and not form.get("ContentSid"):
            return err(21602)
        whatsapp = to.startswith("whatsapp:")
        if from_ and whatsapp != from_.startswith("whatsapp:"):
            return err(21910)
        if not E164.fullmatch(to.removeprefix("whatsapp:")):
            return err(21211)
        if to.removeprefix("whatsapp:") in self.opted_out:
            return err(21610)
        if whatsapp and self.enforce_whatsapp_window and not form.get("ContentSid"):
            since = self.clock() - timedelta(hours=24)
            if not any(
                x["direction"] == "inbound" and x["from"] == to and x["date_created"] >= since
                for x in self.messages
            ):
                return err(63016)
        body = form.get("Body", "")
        if form.get("ContentSid"):
            body = f"[template {form['ContentSid']}] {form.get('ContentVariables', '')}"
        msg = self._new(to=to, from_=from_, body=body, direction="outbound-api", when=self.clock())
        msg["messaging_service_sid"] = service
        msg["content_sid"] = form.get("ContentSid")
        self.created.append(form)
        response = self._json(msg)
        if service:
            response["status"] = "accepted"
        if not self.hold_queue:
            # Twilio hands it to the carrier within seconds: what a later list sees
            msg.update(status="sent", date_sent=self.clock())
        if self.on_create is not None:
            self.on_create(msg)
        return Response(201, response)

    def _list(self, req: Request) -> Response:
        found = list(reversed(self.messages))
        if req.arg("To"):
            found = [m for m in found if m["to"] == req.arg("To")]
        if req.arg("From"):
            found = [m for m in found if m["from"] == req.arg("From")]
        for key, keep in (
            ("DateSent", lambda d, day: d.date() == day.date()),
            ("DateSent>", lambda d, day: d >= day),
            ("DateSent<", lambda d, day: d < day + timedelta(days=1)),
        ):
            value = req.arg(key)
            if value:
                day = _parse_day(value)
                found = [m for m in found if m["date_sent"] and keep(m["date_sent"], day)]
        size = int(req.arg("PageSize", "50") or 50)
        page = int(req.arg("Page", "0") or 0)
        chunk = found[page * size : (page + 1) * size]
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        params = urlencode(
            [(k, v[0]) for k, v in req.query.items() if k not in ("Page", "PageSize")]
        )
        more = (page + 1) * size < len(found)
        return Response(
            200,
            {
                "messages": [self._json(x) for x in chunk],
                "end": page * size + max(len(chunk) - 1, 0),
                "first_page_uri": f"{base}?{params}&PageSize={size}&Page=0",
                "next_page_uri": (
                    f"{base}?{params}&PageSize={size}&Page={page + 1}" if more else None
                ),
                "page": page,
                "page_size": size,
                "previous_page_uri": (
                    f"{base}?{params}&PageSize={size}&Page={page - 1}" if page else None
                ),
                "start": page * size,
                "uri": f"{base}?{params}&PageSize={size}&Page={page}",
            },
        )

    def start(self) -> FakeTwilio:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()
