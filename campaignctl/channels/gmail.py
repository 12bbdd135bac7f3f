"""Gmail API channel: `users.messages.send` with the raw MIME, reconciled by `rfc822msgid:`.

Credentials are an authorized-user token file (written by `campaignctl auth gmail`, google-auth's
`Credentials.to_json` format, its own `token_uri` honoured) or a Workspace service account with
domain-wide delegation. google-auth refreshes the access token by itself; we write a refreshed
token back to the file (mode 0600) so the next run starts with it.

The client never retries (`num_retries=0`): the engine owns retries and backoff, so a 429 comes
back to it at once as a transient `ChannelError`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from campaignctl.attachments import DEFAULT_MAX_MESSAGE_SIZE
from campaignctl.channels.base import (
    ChannelError,
    CredentialsError,
    ErrorKind,
    Fetched,
    Outgoing,
    Received,
    Reconciled,
    Reconciliation,
    Sent,
)
from campaignctl.channels.mime import email_bytes
from campaignctl.channels.providers.gmail import GmailChannel
from campaignctl.config import Config
from campaignctl.errors import CampaignctlError

_log = logging.getLogger(__name__)

#: gmail.send to send; gmail.modify so `sync` can read replies and bounces and label them.
SCOPES = (
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.modify",
)
#: 403 reasons that mean "slow down", not "forbidden".
RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded", "quotaExceeded"}
)
#: `sync` without a usable history id searches by date: this far back on a first sync, and
#: with this much overlap after the last one (`after:` is in seconds; clocks differ).
FIRST_SYNC_LOOKBACK = timedelta(days=7)
SEARCH_OVERLAP = timedelta(hours=1)
#: `sync` reads at most SYNC_MAX_PAGES list pages (`history.list`, or `messages.list` for the
#: dated search) of SYNC_PAGE_SIZE entries per channel and run, each message then read whole
#: (one `messages.get` each); the cursor then keeps the page to read next and the round it
#: belongs to, the next `sync` goes on from there, and only when every page is read does the
#: cursor move on to where that round started.
SYNC_MAX_PAGES = 10
#: A message larger than this (or with attachments) goes through the upload URL, not `raw` in a
#: JSON body, which Gmail refuses above a few MB (some accounts above 1 MB).
RAW_LIMIT = 512 * 1024
SYNC_PAGE_SIZE = 100
#: `reconcile_many` ORs Message-IDs into one search, keeping each query this short at most
#: (Gmail refuses very long queries), and reads the Message-ID of the messages found in batches
#: of at most RECONCILE_BATCH_GETS requests (Google's advice for Gmail: 50).
RECONCILE_QUERY_CHARS = 1500
RECONCILE_BATCH_GETS = 50


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # os.open's mode only applies to a new file; a leftover tmp keeps its own mode.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def auth_hint(name: str) -> str:
    return f"run `campaignctl auth gmail --channel {name} --client-secrets FILE` to connect again"


def load_credentials(cfg: Config, name: str, ch: GmailChannel) -> Any:
    """The channel's google-auth credentials: service account (+ delegate) or token file."""
    if ch.service_account:
        from google.oauth2 import service_account

        sa_path = cfg.resolve(ch.service_account)
        try:
            sa = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(sa_path), scopes=list(SCOPES)
            )
        except FileNotFoundError:
            raise CredentialsError(
                f"gmail channel {name!r}: service account key {sa_path} not found",
                hint=f"download the key JSON and set channels.{name}.service_account to its path",
            ) from None
        except (ValueError, KeyError):
            raise CredentialsError(
                f"gmail channel {name!r}: {sa_path} is not a service account key file",
                hint="download a JSON key of a service account from the Google Cloud console",
            ) from None
        return sa.with_subject(ch.delegate) if ch.delegate else sa

    from google.oauth2.credentials import Credentials

    token_path = cfg.resolve(ch.credentials)
    try:
        creds = Credentials.from_authorized_user_file(str(token_path))  # type: ignore[no-untyped-call]
        # google-auth now ignores the file's token_uri and uses Google's; the contract is to
        # honour it (proxies, tests), and the file is ours: written by `auth gmail`, mode 0600.
        token_uri = json.loads(token_path.read_text(encoding="utf-8")).get("token_uri")
        if token_uri and token_uri != creds.token_uri:
            moved = creds.with_token_uri(token_uri)
            moved.expiry = creds.expiry  # the copy forgets it, and would skip the refresh
            creds = moved
        return creds
    except FileNotFoundError:
        raise CredentialsError(
            f"gmail channel {name!r}: no token file at {token_path}",
            hint=auth_hint(name),
        ) from None
    except OSError as exc:  # unreadable: wrong owner or mode for the user that runs us
        raise CredentialsError(
            f"gmail channel {name!r}: cannot read the token file {token_path}: {exc.strerror}",
            hint=f"make it readable by this user (mode 0600), or {auth_hint(name)[4:]}",
        ) from None
    except (ValueError, KeyError):
        raise CredentialsError(
            f"gmail channel {name!r}: {token_path} is not a Gmail token file",
            hint=auth_hint(name),
        ) from None


def _error_details(exc: HttpError) -> tuple[str, str]:
    """(reason, message) from a Google JSON error body, tolerant of any other body."""
    try:
        err = json.loads(exc.content.decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", exc.resp.reason or ""
    if not isinstance(err, dict):
        return "", str(err)
    errors = err.get("errors") or [{}]
    reason = str(errors[0].get("reason") or err.get("status") or "")
    return reason, str(err.get("message") or "")


def classify_http_error(name: str, exc: HttpError) -> ChannelError:
    """Gmail's HTTP errors as our kinds: 429/403-rate/5xx transient, 401/403 auth, 4xx permanent."""
    status = int(exc.resp.status)
    reason, message = _error_details(exc)
    text = f"gmail channel {name!r}: {status} {reason or 'error'}: {message}".rstrip(": ")
    retry_after: float | None = None
    if exc.resp.get("retry-after", "").isdigit():
        retry_after = float(exc.resp["retry-after"])
    if status == 429 or (status == 403 and reason in RATE_LIMIT_REASONS):
        return ChannelError(ErrorKind.TRANSIENT, text, code=str(status), retry_after=retry_after)
    if status >= 500:
        return ChannelError(
            ErrorKind.TRANSIENT, text, code=str(status), retry_after=retry_after, maybe_sent=True
        )
    if status in (401, 403):
        # 401 arrives after google-auth already refreshed once; 403 is a missing scope or a
        # refused delegation: either way no message on this channel can go until a person acts.
        return CredentialsError(text, code=str(status), hint=auth_hint(name))
    return ChannelError(ErrorKind.PERMANENT, text, code=str(status))


class GmailApiChannel:
    """One Gmail mailbox (`userId = "me"`, or the delegated user of a service account)."""

    def __init__(self, cfg: Config, name: str, ch: GmailChannel) -> None:
        self.name = name
        self.kind = "email"
        self._sender = cfg.sender
        self._creds = load_credentials(cfg, name, ch)
        self._token_path = None if ch.service_account else cfg.resolve(ch.credentials)
        self._saved_token = getattr(self._creds, "token", None)
        http = google_auth_httplib2.AuthorizedHttp(
            self._creds, http=httplib2.Http(timeout=ch.timeout.total_seconds())
        )
        options = None
        # the client sends a batch to the discovery document's rootUrl, never to api_endpoint
        self._batch_uri = "https://gmail.googleapis.com/batch/gmail/v1"
        self._endpoint: str | None = None
        if ch.api_endpoint:
            # the discovery paths are relative ("gmail/v1/users/..."): keep the endpoint's path
            options = {"api_endpoint": ch.api_endpoint.rstrip("/") + "/"}
            self._batch_uri = options["api_endpoint"] + "batch/gmail/v1"
            self._endpoint = options["api_endpoint"]
        self._service = build(
            "gmail",
            "v1",
            http=http,
            client_options=options,
            static_discovery=True,  # the discovery document bundled with the library: no network
            cache_discovery=False,
        )

    def send(self, msg: Outgoing) -> Sent:
        """`users.messages.send` with the raw MIME, in the first email's thread for thread steps."""
        # UTF-8 headers when an address is not ASCII: Gmail takes them (RFC 6532)
        data = email_bytes(msg, self._sender, max_size=DEFAULT_MAX_MESSAGE_SIZE)
        body: dict[str, str] = {}
        if msg.thread_id:
            body["threadId"] = msg.thread_id
        messages = self._service.users().messages()
        if msg.attachments or len(data) > RAW_LIMIT:
            # the JSON body's `raw` is refused above a few MB (413): the upload URL takes up to
            # 35 MB, as one multipart/related request (metadata, then the message)
            from googleapiclient.http import MediaIoBaseUpload

            media = MediaIoBaseUpload(io.BytesIO(data), "message/rfc822", resumable=False)
            request = messages.send(userId="me", body=body, media_body=media)
            if self._endpoint:
                # the client moves only the host of an upload URL to api_endpoint: not its
                # scheme, nor under its path
                parts = urlsplit(request.uri)
                query = f"?{parts.query}" if parts.query else ""
                request.uri = self._endpoint + parts.path.lstrip("/") + query
        else:
            body["raw"] = base64.urlsafe_b64encode(data).decode("ascii")
            request = messages.send(userId="me", body=body)
        resp = self._call(lambda: request.execute(num_retries=0))
        return Sent(provider_id=str(resp["id"]), thread_id=resp.get("threadId"))

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        """Search the mailbox for our Message-ID: found means it went out."""
        return self.reconcile_many([msg])[msg.id]

    def reconcile_many(self, msgs: Sequence[Outgoing]) -> dict[int, Reconciliation]:
        """Every lost outcome with one search per chunk of Message-IDs (`{rfc822msgid:<a>
        rfc822msgid:<b> ...}`), then the Message-ID header of each message found, read in one
        batch request (a search for one Message-ID needs no read: what it finds is that message).

        Not found: `not_sent`. Found: `sent` with the Gmail id and thread (a copy labelled SENT
        first). A found message that could not be read leaves those of its search that were not
        matched `unknown`: one of them may be that message.
        """
        answers = {m.id: Reconciliation(Reconciled.UNKNOWN) for m in msgs}
        wanted: dict[str, list[Outgoing]] = {}
        for m in msgs:
            if m.rfc_message_id and _bare_id(m.rfc_message_id):
                wanted.setdefault(_bare_id(m.rfc_message_id).lower(), []).append(m)
        for chunk in _query_chunks(
            [_bare_id(ms[0].rfc_message_id or "") for ms in wanted.values()]
        ):
            terms = [f"rfc822msgid:{i}" for i in chunk]
            query = terms[0] if len(terms) == 1 else "{" + " ".join(terms) + "}"
            listed = self._search(query)
            found: dict[str, dict[str, Any]] = {}
            unread = False
            if len(chunk) == 1:
                if listed:
                    found[chunk[0].lower()] = listed[0]
            else:
                for meta in self._read_metadata([str(m["id"]) for m in listed]):
                    if meta is None:
                        unread = True
                        continue
                    key = _bare_id(_header(meta, "Message-ID")).lower()
                    sent_copy = "SENT" in (meta.get("labelIds") or [])
                    if key and (key not in found or sent_copy):
                        found[key] = meta
            for key in (i.lower() for i in chunk):
                got = found.get(key)
                if got is not None:
                    answer = Reconciliation(
                        Reconciled.SENT, provider_id=str(got["id"]), thread_id=got.get("threadId")
                    )
                elif unread:
                    continue  # stays unknown: it may be the message that could not be read
                else:
                    answer = Reconciliation(Reconciled.NOT_SENT)
                for m in wanted[key]:
                    answers[m.id] = answer
        return answers

    def _search(self, query: str) -> list[dict[str, Any]]:
        """Every message the search finds, spam and trash included (all pages)."""
        messages = self._service.users().messages()
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._call(
                lambda t=token: (  # type: ignore[misc]
                    messages.list(
                        userId="me", q=query, includeSpamTrash=True, pageToken=t, maxResults=500
                    ).execute(num_retries=0)
                )
            )
            out.extend(page.get("messages") or [])
            token = page.get("nextPageToken")
            if not token:
                return out

    def _read_metadata(self, ids: list[str]) -> list[dict[str, Any] | None]:
        """Each message's id, thread, labels and Message-ID header, with one batch request per
        RECONCILE_BATCH_GETS messages; None for one that could not be read (deleted since, or a
        transient error). Refused credentials raise."""
        messages = self._service.users().messages()
        got: dict[str, dict[str, Any] | None] = {}
        errors: list[ChannelError] = []

        def answer(request_id: str, response: Any, exc: HttpError | None) -> None:
            got[request_id] = response if exc is None else None
            if exc is not None:
                errors.append(classify_http_error(self.name, exc))

        for start in range(0, len(ids), RECONCILE_BATCH_GETS):
            batch = BatchHttpRequest(callback=answer, batch_uri=self._batch_uri)
            for i in range(start, min(start + RECONCILE_BATCH_GETS, len(ids))):
                batch.add(
                    messages.get(
                        userId="me", id=ids[i], format="metadata", metadataHeaders=["Message-ID"]
                    ),
                    request_id=str(i),
                )
            self._call(batch.execute)
            for err in errors:
                if err.kind is ErrorKind.AUTH:
                    raise err
        return [got.get(str(i)) for i in range(len(ids))]

    def fetch_inbound(self, cursor: str | None, now: datetime) -> Fetched:
        """Messages added to the mailbox since the cursor, each fetched with `format=raw`, from
        at most SYNC_MAX_PAGES list pages.

        The cursor is `{"history_id", "at"}`: `history.list` from that history id where Gmail
        still serves it; when it is too old (Gmail answers 404) or on a first sync, a dated
        `after:` search from `at` (or a week back) instead. A round cut short by the page cap
        adds `"round"` to the cursor (the kind, the page token to read next, the history id
        where the round began or the search's query, the history id and time the next round
        starts from), and the next call finishes that round first.
        """
        state: dict[str, Any] = {}
        if cursor:
            with contextlib.suppress(ValueError):
                loaded = json.loads(cursor)
                state = loaded if isinstance(loaded, dict) else {}
        pending = state.get("round")
        round_: dict[str, Any] | None = None
        # a round this method stored; anything else is ignored (a new round begins)
        needs = {"history": ("start", "at"), "search": ("query", "next_history_id", "at")}
        if isinstance(pending, dict) and all(
            pending.get(k) for k in needs.get(str(pending.get("kind")), ("?",))
        ):
            round_ = pending
        elif state.get("history_id"):
            round_ = {"kind": "history", "start": str(state["history_id"]), "at": now.isoformat()}
        ids: dict[str, str | None] = {}
        budget = [SYNC_MAX_PAGES]
        done = False
        if round_ is not None and round_["kind"] == "history":
            try:
                done = self._history_ids(round_, ids, budget)
            except ChannelError as exc:
                if exc.code != "404":
                    raise
                ids.clear()  # the history id expired: search by date below
                round_ = None
        if round_ is None:
            users = self._service.users()
            profile = self._call(lambda: users.getProfile(userId="me").execute(num_retries=0))
            since = now - FIRST_SYNC_LOOKBACK
            if state.get("at"):
                with contextlib.suppress(ValueError, TypeError):
                    since = datetime.fromisoformat(str(state["at"])) - SEARCH_OVERLAP
            round_ = {
                "kind": "search",
                "query": f"after:{int(since.timestamp())}",
                # read before the search: nothing falls between it and the next round
                "next_history_id": str(profile["historyId"]),
                "at": now.isoformat(),
            }
        if round_["kind"] == "search":
            done = self._search_ids(round_, ids, budget)
        out = self._read_raw(ids)
        if not done:
            keep = {"history_id": state.get("history_id"), "at": state.get("at"), "round": round_}
            return Fetched(out, json.dumps(keep), more=True)
        return Fetched(
            out, json.dumps({"history_id": round_["next_history_id"], "at": round_["at"]})
        )

    def _read_raw(self, ids: dict[str, str | None]) -> list[Received]:
        users = self._service.users()
        out = []
        for msg_id in ids:
            try:
                got = self._call(
                    lambda i=msg_id: (  # type: ignore[misc]
                        users.messages().get(userId="me", id=i, format="raw").execute(num_retries=0)
                    )
                )
            except ChannelError as exc:
                if exc.code == "404":
                    continue  # deleted since it was listed: nothing to read, and no reason to stall
                raise
            raw = base64.urlsafe_b64decode(str(got["raw"]) + "=" * (-len(got["raw"]) % 4))
            when = None
            if str(got.get("internalDate") or "").isdigit():
                when = datetime.fromtimestamp(int(got["internalDate"]) / 1000, UTC)
            out.append(
                Received(
                    provider_id=str(got["id"]),
                    raw=raw,
                    thread_id=got.get("threadId"),
                    received_at=when,
                )
            )
        return out

    def _history_ids(
        self, round_: dict[str, Any], ids: dict[str, str | None], budget: list[int]
    ) -> bool:
        """Ids of messages added since the round's history id (our own sends left out), from
        its next page on while the budget lasts; True when the round has no page left.

        The round ends at the history id Gmail gave with its first page: what was added after
        that is read (again, harmlessly) by the next round, so a page token that leaves out
        what arrived meanwhile loses nothing."""
        history = self._service.users().history()
        while budget[0] > 0:
            budget[0] -= 1
            page = self._call(
                lambda t=round_.get("page"): (  # type: ignore[misc]
                    history.list(
                        userId="me",
                        startHistoryId=round_["start"],
                        historyTypes="messageAdded",
                        pageToken=t,
                        maxResults=SYNC_PAGE_SIZE,
                    ).execute(num_retries=0)
                )
            )
            if not round_.get("next_history_id"):
                round_["next_history_id"] = str(page.get("historyId") or round_["start"])
            for rec in page.get("history") or []:
                for added in rec.get("messagesAdded") or []:
                    m = added.get("message") or {}
                    labels = set(m.get("labelIds") or [])
                    if ("SENT" in labels and "INBOX" not in labels) or "DRAFT" in labels:
                        continue
                    ids[str(m["id"])] = m.get("threadId")
            round_["page"] = page.get("nextPageToken")
            if not round_["page"]:
                return True
        return False

    def _search_ids(
        self, round_: dict[str, Any], ids: dict[str, str | None], budget: list[int]
    ) -> bool:
        """Ids the round's dated search finds, from its next page on while the budget lasts;
        True when the round has no page left."""
        messages = self._service.users().messages()
        while budget[0] > 0:
            budget[0] -= 1
            page = self._call(
                lambda t=round_.get("page"): (  # type: ignore[misc]
                    messages.list(
                        userId="me", q=round_["query"], pageToken=t, maxResults=SYNC_PAGE_SIZE
                    ).execute(num_retries=0)
                )
            )
            for m in page.get("messages") or []:
                ids[str(m["id"])] = m.get("threadId")
            round_["page"] = page.get("nextPageToken")
            if not round_["page"]:
                return True
        return False

    def close(self) -> None:
        self._service.close()

    def _call(self, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except HttpError as exc:
            raise classify_http_error(self.name, exc) from None
        except RefreshError as exc:
            if getattr(exc, "retryable", False):  # the token endpoint failed, not our token
                raise ChannelError(
                    ErrorKind.TRANSIENT,
                    f"gmail channel {self.name!r}: cannot refresh the token now "
                    f"({_refresh_reason(exc)})",
                ) from None
            raise CredentialsError(
                f"gmail channel {self.name!r}: the token was refused when refreshing it "
                f"({_refresh_reason(exc)})",
                hint=auth_hint(self.name),
            ) from None
        except TimeoutError as exc:
            raise ChannelError(
                ErrorKind.TRANSIENT,
                f"gmail channel {self.name!r}: timed out ({exc})",
                maybe_sent=True,
            ) from None
        except (TransportError, httplib2.HttpLib2Error, OSError) as exc:
            raise ChannelError(
                ErrorKind.TRANSIENT,
                f"gmail channel {self.name!r}: cannot reach Gmail ({type(exc).__name__}: {exc})",
                maybe_sent=not isinstance(exc, ConnectionRefusedError),
            ) from None
        finally:
            self._keep_refreshed_token()

    def _keep_refreshed_token(self) -> None:
        token = getattr(self._creds, "token", None)
        if self._token_path is not None and token and token != self._saved_token:
            try:
                write_secret(self._token_path, self._creds.to_json())
            except OSError as exc:
                # not fatal: the token in memory works, and the next run refreshes again
                _log.warning(
                    "gmail channel %r: cannot save the refreshed token to %s: %s",
                    self.name,
                    self._token_path,
                    exc.strerror or exc,
                )
                return
            self._saved_token = token


def _bare_id(message_id: str) -> str:
    """A Message-ID without its angle brackets, as `rfc822msgid:` takes it."""
    return message_id.strip().strip("<>").strip()


def _header(meta: dict[str, Any], name: str) -> str:
    """A header of a `format=metadata` message ("" when it has none)."""
    for h in (meta.get("payload") or {}).get("headers") or []:
        if str(h.get("name", "")).lower() == name.lower():
            return str(h.get("value") or "")
    return ""


def _query_chunks(ids: list[str]) -> list[list[str]]:
    """The Message-IDs in groups whose OR query stays within RECONCILE_QUERY_CHARS."""
    chunks: list[list[str]] = []
    size = 0
    for i in ids:
        term = len("rfc822msgid:") + len(i) + 1
        if chunks and size + term + 2 <= RECONCILE_QUERY_CHARS:
            chunks[-1].append(i)
            size += term
        else:
            chunks.append([i])
            size = term
    return chunks


def _refresh_reason(exc: RefreshError) -> str:
    # RefreshError carries the token endpoint's JSON; keep only its error code, never a token.
    for arg in exc.args[1:]:
        if isinstance(arg, dict) and arg.get("error"):
            return str(arg["error"])
    first = str(exc.args[0]) if exc.args else ""
    return first.split(":", 1)[0] or "refused"


def open(cfg: Config, name: str) -> GmailApiChannel:
    """The Gmail adapter for channel `name` (called by `open_channel`)."""
    ch = cfg.channels[name]
    assert isinstance(ch, GmailChannel)
    return GmailApiChannel(cfg, name, ch)


def authorize(
    client_secrets: Path,
    token_path: Path,
    *,
    port: int = 0,
    open_browser: bool = True,
    prompt: str = "Open this URL in a browser to allow campaignctl to send mail:\n{url}",
    timeout: float | None = 600,
) -> Path:
    """Run the installed-app OAuth flow and store the token at `token_path` with mode 0600.

    A loopback server on `port` (0: any free port) receives Google's redirect; `prompt` is
    printed with the consent URL. Offline access with `prompt=consent` so Google always returns
    a refresh token, also for an account that consented before.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=list(SCOPES))
    except FileNotFoundError:
        raise CampaignctlError(
            f"{client_secrets}: no such file",
            "download the OAuth client JSON (type 'Desktop app') from Google Cloud console, "
            "APIs & Services, Credentials",
        ) from None
    except (ValueError, KeyError):
        raise CampaignctlError(
            f"{client_secrets}: not an OAuth client secrets file",
            "download the OAuth client JSON (type 'Desktop app') from Google Cloud console",
        ) from None
    try:
        creds = flow.run_local_server(
            host="localhost",
            port=port,
            open_browser=open_browser,
            authorization_prompt_message=prompt,
            success_message="campaignctl is connected. You may close this window.",
            timeout_seconds=timeout,
            access_type="offline",
            prompt="consent",
        )
    except OSError as exc:
        raise CampaignctlError(
            f"cannot listen on localhost:{port} for Google's redirect: {exc.strerror or exc}",
            "choose another port with --port N",
        ) from None
    except Exception as exc:  # oauthlib's and google-auth's errors share no base class
        raise CampaignctlError(
            f"Google authorization failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            "run `campaignctl auth gmail` again",
        ) from None
    write_secret(token_path, creds.to_json())
    return token_path
