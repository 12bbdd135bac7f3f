"""Which clicks and opens were likely made by a machine, as a pure function.

Mail providers and corporate gateways fetch what an email points at before (or instead of) a
person: Apple Mail Privacy Protection loads every image through Apple's proxy as soon as the
message arrives, Gmail and Yahoo load images through their own proxies, and link scanners
(Microsoft Safe Links, Barracuda, Mimecast, Proofpoint) follow every link to look for malware.
Counted as people, they make every email look opened and every link clicked.

`machine_reason(hit)` says why a hit looks like a machine's, or None for a person's. The rules
are heuristics, in the order of `RULES`; the first that matches names the reason recorded in
the event's `detail.why`. Rates (A/B `click_rate`, `report`) leave machine hits out; the events
stay, so a rule can be judged afterwards.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: A hit this soon after the send is a scanner at the gateway, or a prefetching client: nobody
#: reads an email and clicks in it within seconds of its sending.
TOO_SOON = timedelta(seconds=10)
#: Clicks on two different links of one message within this long are a scanner following
#: every link (a person clicks one, reads, maybe comes back).
BURST = timedelta(seconds=1)

#: User agents of known prefetchers, proxies, scanners and bots: (pattern, reason), matched
#: case-insensitively anywhere in the User-Agent header, first match wins.
USER_AGENTS: tuple[tuple[str, str], ...] = (
    (r"GoogleImageProxy", "google_image_proxy"),
    (r"YahooMailProxy", "yahoo_mail_proxy"),
    (r"Safe ?Links|Microsoft Office Existence|ms-office|Microsoft Office/", "microsoft_scanner"),
    (r"Barracuda", "barracuda"),
    (r"Mimecast", "mimecast"),
    (r"Proofpoint|ppops", "proofpoint"),
    (r"Symantec|Forcepoint|Trend ?Micro|Sophos|FireEye|Cisco|IronPort", "security_gateway"),
    (
        r"bot\b|bot/|crawler|spider|scanner|HeadlessChrome|PhantomJS|facebookexternalhit"
        r"|Slack-ImgProxy|SkypeUriPreview|WhatsApp/|Discordbot",
        "bot",
    ),
    (
        r"^(curl|Wget|python-requests|python-httpx|Go-http-client|Java|okhttp|libwww)",
        "http_library",
    ),
)

_USER_AGENTS = tuple((re.compile(p, re.IGNORECASE), why) for p, why in USER_AGENTS)

#: Apple's own network: Mail Privacy Protection fetches from it.
APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")


@dataclass(frozen=True)
class Hit:
    """A request for a click redirect or an open pixel, with what the rules need to judge it.

    `earlier` are the message's clicks recorded before this one: (when, URL)."""

    kind: str  # "click" | "open"
    method: str
    user_agent: str
    at: datetime
    sent_at: datetime | None = None
    client_ip: str | None = None
    url: str | None = None
    earlier: Sequence[tuple[datetime, str]] = ()


def _head(hit: Hit) -> str | None:
    # a person's browser never sends HEAD for a link or an image: link checkers do
    return "head_request" if hit.method.upper() == "HEAD" else None


def _no_user_agent(hit: Hit) -> str | None:
    return "no_user_agent" if not hit.user_agent.strip() else None


def _known_user_agent(hit: Hit) -> str | None:
    for pattern, why in _USER_AGENTS:
        if pattern.search(hit.user_agent):
            return f"user_agent:{why}"
    return None


def _apple_proxy(hit: Hit) -> str | None:
    # Apple's proxy sends a bare "Mozilla/5.0" from Apple's network; a bare one from anywhere
    # is no browser either
    if hit.user_agent.strip() == "Mozilla/5.0":
        return "apple_privacy_proxy"
    try:
        ip = ipaddress.ip_address(hit.client_ip or "")
    except ValueError:
        return None
    return "apple_privacy_proxy" if ip in APPLE_NETWORK else None


def _too_soon(hit: Hit) -> str | None:
    if hit.sent_at is None:
        return None
    return "soon_after_send" if hit.at - hit.sent_at < TOO_SOON else None


def _burst(hit: Hit) -> str | None:
    if hit.kind != "click":
        return None
    for at, url in hit.earlier:
        if url != hit.url and abs(hit.at - at) <= BURST:
            return "burst"
    return None


#: The rules in order: the first that answers names the reason.
RULES: tuple[Callable[[Hit], str | None], ...] = (
    _head,
    _no_user_agent,
    _known_user_agent,
    _apple_proxy,
    _too_soon,
    _burst,
)


def machine_reason(hit: Hit) -> str | None:
    """Why `hit` looks like a machine's (a short code for `detail.why`), or None."""
    for rule in RULES:
        why = rule(hit)
        if why is not None:
            return why
    return None


def burst_partners(hit: Hit) -> list[int]:
    """The indexes in `hit.earlier` of the other links clicked within `BURST` of this click:
    when a burst is found, they were the same scanner and are flagged too."""
    return [
        i for i, (at, url) in enumerate(hit.earlier) if url != hit.url and abs(hit.at - at) <= BURST
    ]
