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
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

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
        if ch.api_endpoint:
            # the discovery paths are relative ("gmail/v1/users/..."): keep the endpoint's path
            options = {"api_endpoint": ch.api_endpoint.rstrip("/") + "/"}
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
        raw = base64.urlsafe_b64encode(email_bytes(msg, self._sender)).decode("ascii")
        body: dict[str, str] = {"raw": raw}
        if msg.thread_id:
            body["threadId"] = msg.thread_id
        request = self._service.users().messages().send(userId="me", body=body)
        resp = self._call(lambda: request.execute(num_retries=0))
        return Sent(provider_id=str(resp["id"]), thread_id=resp.get("threadId"))

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        """Search the mailbox for our Message-ID: found means it went out."""
        if not msg.rfc_message_id:
            return Reconciliation(Reconciled.UNKNOWN)
        query = f"rfc822msgid:{msg.rfc_message_id.strip().strip('<>')}"
        resp = self._call(
            lambda: (
                self._service.users()
                .messages()
                .list(userId="me", q=query, includeSpamTrash=True, maxResults=10)
                .execute(num_retries=0)
            )
        )
        found = resp.get("messages") or []
        if not found:
            return Reconciliation(Reconciled.NOT_SENT)
        return Reconciliation(
            Reconciled.SENT, provider_id=found[0]["id"], thread_id=found[0].get("threadId")
        )

    def fetch_inbound(self, cursor: str | None, now: datetime) -> Fetched:
        """Messages added to the mailbox since the cursor, each fetched with `format=raw`.

        The cursor is `{"history_id", "at"}`: `history.list` from that history id where Gmail
        still serves it; when it is too old (Gmail answers 404) or on a first sync, a dated
        `after:` search from `at` (or a week back) instead.
        """
        state: dict[str, str] = {}
        if cursor:
            try:
                state = json.loads(cursor)
            except ValueError:
                state = {}
        users = self._service.users()
        ids: dict[str, str | None] = {}
        new_history: str | None = None
        if state.get("history_id"):
            try:
                new_history = self._history_ids(state["history_id"], ids)
            except ChannelError as exc:
                if exc.code != "404":
                    raise
                ids.clear()  # the history id expired: search by date below
        if new_history is None:
            profile = self._call(lambda: users.getProfile(userId="me").execute(num_retries=0))
            new_history = str(profile["historyId"])  # before the search: nothing falls between
            since = now - FIRST_SYNC_LOOKBACK
            if state.get("at"):
                with contextlib.suppress(ValueError):
                    since = datetime.fromisoformat(state["at"]) - SEARCH_OVERLAP
            query = f"after:{int(since.timestamp())}"
            token: str | None = None
            while True:
                page = self._call(
                    lambda t=token: (  # type: ignore[misc]
                        users.messages()
                        .list(userId="me", q=query, pageToken=t, maxResults=500)
                        .execute(num_retries=0)
                    )
                )
                for m in page.get("messages") or []:
                    ids[str(m["id"])] = m.get("threadId")
                token = page.get("nextPageToken")
                if not token:
                    break
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
        return Fetched(out, json.dumps({"history_id": new_history, "at": now.isoformat()}))

    def _history_ids(self, start: str, ids: dict[str, str | None]) -> str:
        """Ids of messages added since history id `start` (our own sends left out)."""
        history = self._service.users().history()
        token: str | None = None
        latest = start
        while True:
            page = self._call(
                lambda t=token: (  # type: ignore[misc]
                    history.list(
                        userId="me",
                        startHistoryId=start,
                        historyTypes="messageAdded",
                        pageToken=t,
                        maxResults=500,
                    ).execute(num_retries=0)
                )
            )
            latest = str(page.get("historyId") or latest)
            for rec in page.get("history") or []:
                for added in rec.get("messagesAdded") or []:
                    m = added.get("message") or {}
                    labels = set(m.get("labelIds") or [])
                    if ("SENT" in labels and "INBOX" not in labels) or "DRAFT" in labels:
                        continue
                    ids[str(m["id"])] = m.get("threadId")
            token = page.get("nextPageToken")
            if not token:
                return latest

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
