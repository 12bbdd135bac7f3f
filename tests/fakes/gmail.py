"""A fake Gmail API and Google OAuth token endpoint on loopback, speaking Google's wire format.

What it serves (under `url`, which is the channel's `api_endpoint`):
- `POST /token`: refresh_token, authorization_code and jwt-bearer (service account) grants;
- `POST /gmail/v1/users/{u}/messages/send` (`raw`, `threadId`): threads like Gmail does, only
  when the subject matches and `In-Reply-To`/`References` point into the thread; a JSON body over
  `raw_limit` (5 MB) is refused with 413, as Gmail refuses one;
- `POST /upload/gmail/v1/users/{u}/messages/send?uploadType=multipart`: the same, the message as
  the message/rfc822 part of a multipart/related body (up to 35 MB; kept in `uploads`);
- `GET  /gmail/v1/users/{u}/messages` (`q` with AND, `{a b}` and `a OR b`, `labelIds`,
  `includeSpamTrash`, paging by `maxResults` and `pageToken`);
- `GET  /gmail/v1/users/{u}/messages/{id}` (`format` = full | metadata | minimal | raw);
- `POST /gmail/v1/users/{u}/messages/{id}/modify`, `GET .../profile`;
- `GET  /gmail/v1/users/{u}/history` (`startHistoryId`, `historyTypes`, `labelId`, paging);
- `POST /batch/gmail/v1`: a multipart/mixed batch of API requests, each answered as if sent alone
  (the inner requests are kept in `batched`).

Tests steer it: `fail_next(...)` queues errors, `reject_tokens` makes every access token invalid
(401 even after a refresh), `token_uses` lets each access token answer only that many API
requests before it expires (401, so the client refreshes in the middle of a run),
`token_error` makes the token endpoint refuse (`invalid_grant`),
`deliver(...)` injects an inbound message (a reply or a bounce) for sync.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage, Message
from email.utils import parseaddr, parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http import LoopbackHTTP, Request, Response

CLIENT_ID = "fake-client.apps.googleusercontent.com"
CLIENT_SECRET = "fake-client-secret"  # a test value, not a secret
REFRESH_TOKEN = "fake-refresh-token"
AUTH_CODE = "fake-auth-code"
SCOPES = [
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.modify",
]
RATE_LIMIT_403 = "userRateLimitExceeded"
_HISTORY_TYPES = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}


def _related_parts(body: bytes, boundary: str) -> list[tuple[bytes, bytes]]:
    """(headers, content) of each part of a multipart/related body, content byte for byte."""
    out = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removeprefix(b"\n")
        head, _, content = chunk.partition(b"\r\n\r\n" if b"\r\n\r\n" in chunk[:2000] else b"\n\n")
        out.append((head, content.removesuffix(b"\n").removesuffix(b"\r")))
    return out


def _parse(raw: bytes) -> Message:
    """Like Gmail, read headers as UTF-8 (RFC 6532); Python's bytes parser reads them as ASCII."""
    try:
        return message_from_string(raw.decode("utf-8"), policy=policy.default)
    except UnicodeDecodeError:
        return message_from_bytes(raw, policy=policy.default)


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    labels: list[str]
    raw: bytes
    internal_date: int  # ms since the epoch
    history_id: int
    mime: Message = field(repr=False)

    def header(self, name: str) -> str:
        return str(self.mime.get(name, ""))

    @property
    def to(self) -> str:
        """The addr-spec of the To header (`"Juan" <juan@example.com>` -> juan@example.com)."""
        return parseaddr(self.header("To"))[1]


@dataclass
class _Failure:
    status: int
    reason: str
    message: str
    path: str
    method: str | None
    retry_after: int | None
    times: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _error(status: int, message: str, reason: str, state: str) -> Response:
    return Response(
        status,
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
                "status": state,
            }
        },
    )


def _parse_query(q: str) -> list[list[str]]:
    """Gmail's search as an AND of OR-groups of terms: `{a b}` and `a OR b` are alternatives
    (OR binds tighter than the implicit AND, as in Gmail)."""
    clauses: list[list[str]] = []
    group: list[str] | None = None
    join = False
    for tok in re.findall(r'[{}]|[^\s{}"]*"[^"]*"|[^\s{}]+', q):
        if tok == "{":
            if group is not None:
                raise ValueError("'{' inside '{...}'")
            group = []
        elif tok == "}":
            if not group:
                raise ValueError("'}' without '{' or an empty '{}'")
            alts, group = group, None
            if join and clauses:
                clauses[-1].extend(alts)
            else:
                clauses.append(alts)
            join = False
        elif tok == "OR":
            if group is None:
                join = True
        elif group is not None:
            group.append(tok)
        elif join and clauses:
            clauses[-1].append(tok)
            join = False
        else:
            clauses.append([tok])
    if group is not None:
        raise ValueError("'{' without '}'")
    return clauses


def _norm_id(message_id: str) -> str:
    return message_id.strip().strip("<>").lower()


def _subject_key(subject: str) -> str:
    return re.sub(r"^(\s*(re|fwd?)\s*:\s*)+", "", subject, flags=re.I).strip().lower()


class FakeGmail:
    """One Gmail mailbox (`address`) and its OAuth token endpoint."""

    def __init__(self, address: str = "ana@sunrise.example") -> None:
        self.address = address
        self.messages: dict[str, StoredMessage] = {}
        self.history: list[tuple[int, dict[str, Any]]] = []
        self.history_id = 1000
        self.oldest_history_id = 1000  # startHistoryId below this: 404, as Gmail does
        self.valid_tokens: set[str] = set()
        self.token_requests: list[dict[str, str]] = []
        self.delegated_subjects: list[str] = []
        self.reject_tokens = False
        self.token_uses: int | None = None
        self._uses: dict[str, int] = {}
        self.token_error: str | None = None
        self.clock = lambda: datetime.now(UTC)
        self._failures: list[_Failure] = []
        self.batched: list[Request] = []  # the requests inside `POST /batch/gmail/v1` bodies
        self.uploads: list[bytes] = []  # messages sent through the upload URL
        self.raw_limit = 5 * 1024 * 1024  # a JSON body with `raw` larger than this: 413
        self.upload_limit = 36_700_160  # the discovery document's maxSize for messages.send
        self._ids = itertools.count(0x18C0000000000001)
        self._tokens = itertools.count(1)
        self.http = LoopbackHTTP(self._handle)

    # ------------------------------------------------------------------ test controls

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def sent(self) -> list[StoredMessage]:
        return [m for m in self.messages.values() if "SENT" in m.labels]

    @property
    def api_requests(self) -> list[Request]:
        """The API's HTTP requests (a batch counts once, in `batch_requests`)."""
        return [r for r in self.http.requests if r.path.startswith("/gmail/")]

    @property
    def batch_requests(self) -> list[Request]:
        return [r for r in self.http.requests if r.path.startswith("/batch/")]

    def fail_next(
        self,
        status: int,
        *,
        reason: str = "",
        message: str = "",
        path: str = "/messages",
        method: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` API requests whose path contains `path` get this error."""
        reason = reason or {
            400: "invalidArgument",
            401: "authError",
            403: RATE_LIMIT_403,
            404: "notFound",
            429: "rateLimitExceeded",
        }.get(status, "backendError")
        message = message or f"fake Gmail error {status} {reason}"
        self._failures.append(_Failure(status, reason, message, path, method, retry_after, times))

    def issue_token(self) -> str:
        token = f"ya29.fake-access-{next(self._tokens)}"
        self.valid_tokens.add(token)
        return token

    def write_token_file(
        self, path: Path, *, expired: bool = True, token: str | None = None
    ) -> Path:
        """An authorized-user token file (google-auth's to_json format) pointing at this fake."""
        expiry = "2000-01-01T00:00:00Z" if expired else "2999-01-01T00:00:00Z"
        data = {
            "token": token
            if token is not None
            else ("ya29.stale" if expired else self.issue_token()),
            "refresh_token": REFRESH_TOKEN,
            "token_uri": self.token_uri,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": SCOPES,
            "expiry": expiry,
        }
        path.write_text(json.dumps(data))
        path.chmod(0o600)
        return path

    def client_secrets(self, path: Path, auth_uri: str = "") -> Path:
        """An installed-app OAuth client file whose token_uri is this fake."""
        data = {
            "installed": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "auth_uri": auth_uri or f"{self.url}/auth",
                "token_uri": self.token_uri,
                "redirect_uris": ["http://localhost"],
            }
        }
        path.write_text(json.dumps(data))
        return path

    def deliver(
        self,
        message: EmailMessage | bytes,
        *,
        labels: tuple[str, ...] = ("INBOX", "UNREAD"),
        thread_id: str | None = None,
    ) -> StoredMessage:
        """Inject an inbound message (a reply, a bounce); it joins the thread it refers to."""
        raw = message if isinstance(message, bytes) else message.as_bytes()
        mime = _parse(raw)
        return self._store(raw, mime, list(labels), thread_id or self._thread_for(mime, None))

    # ------------------------------------------------------------------ storage

    def _store(self, raw: bytes, mime: Message, labels: list[str], thread_id: str) -> StoredMessage:
        msg_id = format(next(self._ids), "x")
        try:
            when = parsedate_to_datetime(str(mime["Date"])) if mime["Date"] else self.clock()
        except (TypeError, ValueError):
            when = self.clock()
        self.history_id += 1
        stored = StoredMessage(
            id=msg_id,
            thread_id=thread_id or msg_id,
            labels=labels,
            raw=raw,
            internal_date=int(when.timestamp() * 1000),
            history_id=self.history_id,
            mime=mime,
        )
        self.messages[msg_id] = stored
        self.history.append(
            (
                self.history_id,
                {"messagesAdded": [{"message": self._ref(stored)}]},
            )
        )
        return stored

    def _ref(self, m: StoredMessage) -> dict[str, Any]:
        return {"id": m.id, "threadId": m.thread_id, "labelIds": list(m.labels)}

    def _thread_for(self, mime: Message, requested: str | None) -> str:
        """Gmail's rule: same subject, and In-Reply-To/References name a message of the thread."""
        refs = {
            _norm_id(r)
            for h in ("In-Reply-To", "References")
            for r in str(mime.get(h, "")).split()
            if r.strip()
        }
        subject = _subject_key(str(mime.get("Subject", "")))
        for m in self.messages.values():
            if requested and m.thread_id != requested:
                continue
            if (
                _norm_id(m.header("Message-ID")) in refs
                and _subject_key(m.header("Subject")) == subject
            ):
                return m.thread_id
        return ""

    # ------------------------------------------------------------------ HTTP

    def _handle(self, req: Request) -> Response:
        if req.path == "/token":
            return self._token(req)
        if req.path == "/auth":
            return Response(200, b"fake consent page")
        if req.path == "/batch/gmail/v1" and req.method == "POST":
            return self._batch(req)
        m = re.fullmatch(r"(?:/upload)?/gmail/v1/users/([^/]+)/(.+)", req.path)
        if not m:
            return _error(
                404, f"fake Gmail has no {req.method} {req.path}", "notFound", "NOT_FOUND"
            )
        auth = req.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if self.token_uses is not None and token in self.valid_tokens:
            self._uses[token] = self._uses.get(token, 0) + 1
            if self._uses[token] > self.token_uses:
                self.valid_tokens.discard(token)  # expired early, as Google may revoke one
        if self.reject_tokens or token not in self.valid_tokens:
            return _error(
                401,
                "Request had invalid authentication credentials.",
                "authError",
                "UNAUTHENTICATED",
            )
        for f in self._failures:
            if f.path in req.path and (f.method is None or f.method == req.method):
                f.times -= 1
                if f.times <= 0:
                    self._failures.remove(f)
                state = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT"}.get(
                    f.status, "UNAVAILABLE" if f.status >= 500 else "PERMISSION_DENIED"
                )
                resp = _error(f.status, f.message, f.reason, state)
                if f.retry_after is not None:
                    resp.headers["Retry-After"] = str(f.retry_after)
                return resp
        rest = m.group(2)
        if req.method == "POST" and rest == "messages/send":
            if req.path.startswith("/upload/"):
                return self._send_upload(req)
            return self._send(req)
        if req.method == "GET" and rest == "messages":
            return self._list(req)
        if req.method == "GET" and rest == "history":
            return self._history(req)
        if req.method == "GET" and rest == "profile":
            return Response(
                200,
                {
                    "emailAddress": self.address,
                    "messagesTotal": len(self.messages),
                    "threadsTotal": len({x.thread_id for x in self.messages.values()}),
                    "historyId": str(self.history_id),
                },
            )
        mm = re.fullmatch(r"messages/([0-9a-f]+)(/modify)?", rest)
        if mm:
            stored = self.messages.get(mm.group(1))
            if stored is None:
                return _error(404, "Requested entity was not found.", "notFound", "NOT_FOUND")
            if mm.group(2) and req.method == "POST":
                return self._modify(stored, req.json() or {})
            if req.method == "GET":
                return Response(200, self._render(stored, req.arg("format", "full") or "full", req))
        return _error(404, f"fake Gmail has no {req.method} {req.path}", "notFound", "NOT_FOUND")

    def _token(self, req: Request) -> Response:
        form = {k: v[0] for k, v in req.form().items()}
        self.token_requests.append(form)
        grant = form.get("grant_type", "")
        if self.token_error:
            return Response(
                400, {"error": self.token_error, "error_description": "fake token endpoint refusal"}
            )
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3599}
        if grant == "refresh_token":
            if (form.get("client_id"), form.get("client_secret"), form.get("refresh_token")) != (
                CLIENT_ID,
                CLIENT_SECRET,
                REFRESH_TOKEN,
            ):
                return Response(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            body["scope"] = " ".join(SCOPES)
        elif grant == "authorization_code":
            # requests-oauthlib sends the client as HTTP basic auth, others in the form
            basic = req.headers.get("authorization", "").removeprefix("Basic ")
            client = base64.b64decode(basic).decode().split(":")[0] if basic else ""
            if form.get("code") != AUTH_CODE or CLIENT_ID not in (client, form.get("client_id")):
                return Response(400, {"error": "invalid_grant", "error_description": "Bad code"})
            body.update(refresh_token=REFRESH_TOKEN, scope=" ".join(SCOPES))
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            payload = form.get("assertion", "..").split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            self.delegated_subjects.append(str(claims.get("sub", "")))
        else:
            return Response(400, {"error": "unsupported_grant_type"})
        body["access_token"] = self.issue_token()
        return Response(200, body)

    def _send_upload(self, req: Request) -> Response:
        """`uploadType=multipart`: a multipart/related body, the JSON metadata (`threadId`) then
        the message/rfc822 bytes; up to `upload_limit` bytes, as Gmail's 35 MB."""
        if len(req.body) > self.upload_limit:
            return _error(413, "Request Entity Too Large", "uploadTooLarge", "INVALID_ARGUMENT")
        kind = req.headers.get("content-type", "")
        found = re.search(r'boundary="?([^";]+)"?', kind)
        if req.arg("uploadType") != "multipart" or not kind.startswith("multipart/related"):
            found = None
        if found is None:
            return _error(
                400, "fake Gmail takes uploadType=multipart only", "badRequest", "INVALID_ARGUMENT"
            )
        parts = _related_parts(req.body, found.group(1))
        if len(parts) != 2 or b"message/rfc822" not in parts[1][0].lower():
            return _error(
                400, "expected metadata and a message/rfc822 part", "badRequest", "INVALID_ARGUMENT"
            )
        meta, raw = parts[0][1], parts[1][1]
        self.uploads.append(raw)
        return self._accept(raw, json.loads(meta or b"{}"))

    def _send(self, req: Request) -> Response:
        if len(req.body) > self.raw_limit:  # Gmail: `raw` in JSON only up to a few MB
            return _error(413, "Request Entity Too Large", "payloadTooLarge", "INVALID_ARGUMENT")
        data = req.json() or {}
        try:
            raw = base64.urlsafe_b64decode(str(data["raw"]) + "=" * (-len(data["raw"]) % 4))
        except (KeyError, ValueError):
            return _error(
                400,
                "'raw' RFC822 payload message string or uploading message via /upload/* URL "
                "required",
                "invalidArgument",
                "INVALID_ARGUMENT",
            )
        return self._accept(raw, data)

    def _accept(self, raw: bytes, data: dict[str, Any]) -> Response:
        mime = _parse(raw)
        to = str(mime.get("To", ""))
        if not re.search(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", to):
            return _error(400, "Invalid To header", "invalidArgument", "INVALID_ARGUMENT")
        requested = data.get("threadId")
        if requested and not any(m.thread_id == requested for m in self.messages.values()):
            return _error(404, "Requested entity was not found.", "notFound", "NOT_FOUND")
        thread = self._thread_for(mime, requested) if requested else ""
        stored = self._store(raw, mime, ["SENT"], thread)
        return Response(200, self._ref(stored))

    def _matches(self, m: StoredMessage, term: str) -> bool:
        key, _, value = term.partition(":")
        key, value = key.lower(), value.strip('"')
        if key == "rfc822msgid":
            return _norm_id(m.header("Message-ID")) == _norm_id(value)
        if key in ("in", "label"):
            return value.lower() == "anywhere" or value.upper() in m.labels
        if key == "is":
            return value.upper() in m.labels
        if key in ("from", "to", "subject"):
            return value.lower() in m.header(key).lower()
        if key in ("after", "before"):
            if value.isdigit():
                edge = int(value) * 1000
            else:
                edge = int(
                    datetime.strptime(value, "%Y/%m/%d").replace(tzinfo=UTC).timestamp() * 1000
                )
            return m.internal_date >= edge if key == "after" else m.internal_date < edge
        raise ValueError(term)

    def _batch(self, req: Request) -> Response:
        """Google's batch: each `application/http` part is one request, answered in a part with
        the same Content-ID (`response-` prepended), in order."""
        ctype = req.headers.get("content-type", "")
        outer = message_from_bytes(f"Content-Type: {ctype}\r\n\r\n".encode() + req.body)
        if not outer.is_multipart():
            return _error(400, "Failed to parse batch request", "badRequest", "INVALID_ARGUMENT")
        boundary = f"batch_fake_{len(self.batched)}"
        parts = []
        for part in outer.get_payload():
            assert isinstance(part, Message)
            payload = part.get_payload()
            assert isinstance(payload, str)
            line, _, rest = payload.lstrip().partition("\n")
            method, target, _version = line.split(" ", 2)
            inner = message_from_string(rest)
            u = urlsplit(target)
            sub = Request(
                method=method,
                path=u.path,
                query=parse_qs(u.query, keep_blank_values=True),
                headers={k.lower(): str(v) for k, v in inner.items()},
                body=str(inner.get_payload() or "").encode("utf-8"),
            )
            self.batched.append(sub)
            resp = self._handle(sub)
            data, content_type = resp.encode()
            parts.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{str(part['Content-ID']).strip('<>')}>\r\n\r\n"
                f"HTTP/1.1 {resp.status} {HTTPStatus(resp.status).phrase}\r\n"
                f"Content-Type: {content_type}\r\n\r\n{data.decode('utf-8')}\r\n"
            )
        body = "".join(parts) + f"--{boundary}--\r\n"
        return Response(
            200, body.encode("utf-8"), {"Content-Type": f"multipart/mixed; boundary={boundary}"}
        )

    def _list(self, req: Request) -> Response:
        try:
            clauses = _parse_query(req.arg("q", "") or "")
        except ValueError as exc:
            return _error(
                400,
                f"fake Gmail cannot parse the query: {exc}",
                "invalidArgument",
                "INVALID_ARGUMENT",
            )
        labels = req.query.get("labelIds", [])
        spam_trash = (req.arg("includeSpamTrash", "false") or "").lower() == "true"
        found = []
        for m in sorted(self.messages.values(), key=lambda x: -x.internal_date):
            if not spam_trash and ({"SPAM", "TRASH"} & set(m.labels)):
                continue
            if any(lb not in m.labels for lb in labels):
                continue
            try:
                if all(any(self._matches(m, t) for t in alts) for alts in clauses):
                    found.append(m)
            except ValueError as exc:
                return _error(
                    400,
                    f"fake Gmail does not understand the query term {exc}",
                    "invalidArgument",
                    "INVALID_ARGUMENT",
                )
        size = int(req.arg("maxResults", "100") or 100)
        start = int(req.arg("pageToken", "0") or 0)
        page = found[start : start + size]
        body: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        return Response(200, body)

    def _render(self, m: StoredMessage, fmt: str, req: Request) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": m.id,
            "threadId": m.thread_id,
            "labelIds": list(m.labels),
            "historyId": str(m.history_id),
            "internalDate": str(m.internal_date),
            "sizeEstimate": len(m.raw),
            "snippet": "",
        }
        if fmt == "raw":
            out["raw"] = _b64(m.raw)
        elif fmt in ("full", "metadata"):
            wanted = {h.lower() for h in req.query.get("metadataHeaders", [])}
            out["payload"] = self._part(m.mime, "", with_body=fmt == "full", wanted=wanted)
            text = m.mime.get_body(("plain",)) if isinstance(m.mime, EmailMessage) else None
            out["snippet"] = " ".join(str(text.get_content()).split())[:100] if text else ""
        return out

    def _part(
        self, part: Message, part_id: str, *, with_body: bool, wanted: set[str]
    ) -> dict[str, Any]:
        headers = [
            {"name": k, "value": str(v)}
            for k, v in part.items()
            if with_body or not wanted or k.lower() in wanted
        ]
        node: dict[str, Any] = {
            "partId": part_id,
            "mimeType": part.get_content_type(),
            "filename": part.get_filename() or "",
            "headers": headers,
            "body": {"size": 0},
        }
        if part.is_multipart():
            node["parts"] = [
                self._part(
                    p, f"{part_id}.{i}" if part_id else str(i), with_body=with_body, wanted=wanted
                )
                for i, p in enumerate(part.get_payload())
            ]
        elif with_body:
            data = part.get_payload(decode=True) or b""
            assert isinstance(data, bytes)
            node["body"] = {"size": len(data), "data": _b64(data)}
        return node

    def _modify(self, m: StoredMessage, data: dict[str, Any]) -> Response:
        added = [lb for lb in data.get("addLabelIds", []) if lb not in m.labels]
        removed = [lb for lb in data.get("removeLabelIds", []) if lb in m.labels]
        m.labels = [lb for lb in m.labels if lb not in removed] + added
        self.history_id += 1
        m.history_id = self.history_id
        record: dict[str, Any] = {}
        if added:
            record["labelsAdded"] = [{"message": self._ref(m), "labelIds": added}]
        if removed:
            record["labelsRemoved"] = [{"message": self._ref(m), "labelIds": removed}]
        self.history.append((self.history_id, record))
        return Response(200, self._ref(m))

    def _history(self, req: Request) -> Response:
        start = int(req.arg("startHistoryId", "0") or 0)
        if start < self.oldest_history_id:
            return _error(404, "Requested entity was not found.", "notFound", "NOT_FOUND")
        # historyTypes=messageAdded selects the messagesAdded records, and so on
        types = {_HISTORY_TYPES.get(t, t) for t in req.query.get("historyTypes", [])}
        label = req.arg("labelId")
        records: list[dict[str, Any]] = []
        for hid, rec in self.history:
            if hid <= start:
                continue
            entry: dict[str, Any] = {"id": str(hid)}
            for kind, items in rec.items():
                if types and kind not in types:
                    continue
                keep = [i for i in items if not label or label in i["message"]["labelIds"]]
                if keep:
                    entry[kind] = keep
            if len(entry) > 1:
                entry["messages"] = [i["message"] for k, v in entry.items() if k != "id" for i in v]
                records.append(entry)
        # oldest first, paged by offset: records added later join the end, as in Gmail
        size = int(req.arg("maxResults", "100") or 100)
        offset = int(req.arg("pageToken", "0") or 0)
        page = records[offset : offset + size]
        body: dict[str, Any] = {"historyId": str(self.history_id)}
        if page:
            body["history"] = page
        if offset + size < len(records):
            body["nextPageToken"] = str(offset + size)
        return Response(200, body)

    def start(self) -> FakeGmail:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()
