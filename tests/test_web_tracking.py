"""Clicks and opens (docs/web.md, "Clicks and opens"): links rewritten by a real `send`, the
`/c/` and `/o/` doors, the machine rules, and click_rate as an A/B metric."""

from __future__ import annotations

import email
import json
import logging
import random
import re
import sqlite3
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaignctl.abtest import SIGNIFICANT, two_proportion
from campaignctl.config import load
from campaignctl.engine import Engine
from campaignctl.store import Store
from campaignctl.web.links import Links
from campaignctl.web.machine import BURST, TOO_SOON, USER_AGENTS, Hit, machine_reason
from campaignctl.web.rewrite import Tracker
from campaignctl.web.tokens import Purpose, Signer
from campaignctl.web.tracking import PIXEL
from tests.support import T0, Cli, add_leads, days, messages, write_project
from tests.support.web import BASE_URL, SECRET, serve_process, server_section, web_rig

BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
LISTING = "https://homes.example/listing?id=7&ref=mail"
GUIDE = "https://homes.example/guide"

CHANNEL = """\
[channels.email]
provider = "outbox"
"""
CAMPAIGN = """\
[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Homes for {{ lead.first_name }}"
template = "hello.html.j2"

[[campaigns.welcome.steps]]
name = "plain"
channel = "email"
delay = "1d"
subject = "Our guide"
body = "Our guide: https://homes.example/guide. Or write to mailto:ana@sunrise.example"
"""
HELLO = """\
<p>Hi {{ lead.first_name }}, see <a class="btn" href="https://homes.example/listing?id=7&amp;ref=mail">the listing</a>.</p>
<p><a data-notrack href="https://homes.example/private">private</a>
<a href="https://homes.example/plain#notrack">plain</a>
<a href="mailto:ana@sunrise.example">write</a> <a href="tel:+6321234567">call</a>
<a href="/relative">relative</a></p>
"""  # noqa: E501


@pytest.fixture
def tracked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose emails are tracked (clicks and opens), its key in the environment."""
    monkeypatch.setenv("CAMPAIGNCTL_SECRET", SECRET)
    (tmp_path / "hello.html.j2").write_text(HELLO)
    section = server_section(track_clicks=True, track_opens=True)
    write_project(tmp_path, CHANNEL + "\n" + section, CAMPAIGN)
    add_leads(tmp_path, {"email": "maria@example.com", "first_name": "Maria"})
    return tmp_path


def _eml(folder: Path, message_id: int) -> EmailMessage:
    raw = (folder / "outbox" / f"{message_id}.eml").read_bytes()
    msg = email.message_from_bytes(raw, policy=email_policy)
    assert isinstance(msg, EmailMessage)
    return msg


def _part(msg: EmailMessage, kind: str) -> str | None:
    part = msg.get_body((kind,))
    return None if part is None else str(part.get_content())


def _tokens(text: str, path: str) -> list[str]:
    return re.findall(re.escape(BASE_URL + path) + r"(\.?[\w\-]+(?:\.[\w\-]+)*)", text)


def _events(folder: Path, kind: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(folder / "campaignctl.db") as con:
        found = con.execute(
            "SELECT message_id, lead_id, channel, detail, occurred_at FROM event "
            "WHERE kind = ? ORDER BY id",
            (kind,),
        ).fetchall()
    return [(m, lead, ch, json.loads(d), at) for m, lead, ch, d, at in found]


def _sent_at(folder: Path, message_id: int) -> datetime:
    store = Store.for_config(load(folder / "campaigns.toml"))
    try:
        (m,) = [m for m in messages(store) if m.id == message_id]
    finally:
        store.close()
    assert m.sent_at is not None
    return m.sent_at


def _forge(token: str, payload: Any) -> str:
    """`token`'s signature on another payload (signed by us, so it is well formed)."""
    other = Signer([SECRET]).dumps(Purpose.CLICK, payload)
    return other.rpartition(".")[0] + "." + token.rpartition(".")[2]


# ---------------------------------------------------------------- at send time


def test_send_writes_tracked_links_and_the_pixel_into_the_eml(tracked: Path, cli: Cli) -> None:
    res = cli("-C", tracked, "send")
    assert res.exit_code == 0, res.stderr
    msg = _eml(tracked, 1)
    html = _part(msg, "html")
    text = _part(msg, "plain")
    assert html is not None
    assert text is not None
    links = Links(BASE_URL, Signer([SECRET]))
    # the listing's link is a signed redirect for message 1, its other attributes kept
    (click,) = _tokens(html, "/c/")
    assert links.read_click(click) == (1, LISTING)
    assert f'<a class="btn" href="{BASE_URL}/c/{click}">the listing</a>' in html
    assert LISTING not in html
    assert "homes.example/listing?id=7&amp;ref=mail" not in html
    # left alone: data-notrack, #notrack (marker removed), mailto, tel, a relative link
    assert '<a data-notrack href="https://homes.example/private">' in html
    assert '<a href="https://homes.example/plain">plain</a>' in html
    assert "#notrack" not in html
    assert 'href="mailto:ana@sunrise.example"' in html
    assert 'href="tel:+6321234567"' in html
    assert 'href="/relative"' in html
    # the footer's unsubscribe link (the server's signed one, with [server]) is never tracked
    (unsubscribe,) = _tokens(text, "/u/")
    assert links.read_unsubscribe(unsubscribe) == (1, "email")
    assert f"Unsubscribe: {BASE_URL}/u/{unsubscribe}" in text
    # the open pixel, once, for message 1
    (pixel,) = _tokens(html, "/o/")
    assert pixel.endswith(".gif")
    assert links.read_open(pixel.removesuffix(".gif")) == 1
    assert f'<img src="{BASE_URL}/o/{pixel}" width="1" height="1" alt=""' in html


def test_a_text_only_email_gets_tracked_bare_urls_and_no_pixel(tracked: Path, cli: Cli) -> None:
    from tests.support import travel

    assert cli("-C", tracked, "send").exit_code == 0
    travel(tracked, days(1))
    res = cli("-C", tracked, "send")
    assert res.exit_code == 0, res.stderr
    msg = _eml(tracked, 2)
    assert _part(msg, "html") is None
    text = _part(msg, "plain")
    assert text is not None
    (click,) = _tokens(text, "/c/")
    # the sentence's full stop stays outside the link; the mailto is left as written
    assert f"Our guide: {BASE_URL}/c/{click}. Or write to mailto:ana@sunrise.example" in text
    assert Links(BASE_URL, Signer([SECRET])).read_click(click) == (2, GUIDE)
    assert "/o/" not in text


def test_send_without_the_key_exits_78_and_sends_nothing(
    tracked: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMPAIGNCTL_SECRET")
    res = cli("-C", tracked, "send")
    assert res.exit_code == 78
    assert res.stderr.startswith("campaignctl: error: ")
    assert "CAMPAIGNCTL_SECRET" in res.stderr
    assert not list((tracked / "outbox").glob("*.eml"))


@pytest.mark.parametrize(
    ("text", "url", "tail"),
    [
        ("see https://a.example/x.", "https://a.example/x", "."),
        ("(see https://a.example/x)", "https://a.example/x", ")"),
        ("https://a.example/wiki/Foo_(bar) ok", "https://a.example/wiki/Foo_(bar)", ""),
        ("[label](https://a.example/md)", "https://a.example/md", ")"),
        ("go: https://a.example/q?a=1&b=2, now", "https://a.example/q?a=1&b=2", ","),
    ],
)
def test_bare_urls_in_text_end_where_prose_does(text: str, url: str, tail: str) -> None:
    links = Links(BASE_URL, Signer([SECRET]))
    out = Tracker(links, 9, clicks=True, opens=False).text(text)
    (token,) = _tokens(out, "/c/")
    assert links.read_click(token) == (9, url)
    assert f"{BASE_URL}/c/{token}{tail}" in out


def test_the_servers_own_links_and_the_unsubscribe_url_are_not_tracked() -> None:
    links = Links(BASE_URL, Signer([SECRET]))
    own = links.unsubscribe(4, "email")
    keep = "https://sunrise.example/unsubscribe?e=maria%40example.com"
    html = f'<a href="{own}">unsubscribe</a> <a href="{keep}">too</a> <a href="{GUIDE}">x</a>'
    tracker = Tracker(links, 9, clicks=True, opens=False, keep=(keep,))
    out = tracker.html(html)
    assert f'href="{own}"' in out
    assert f'href="{keep}"' in out
    assert len(_tokens(out, "/c/")) == 1
    assert tracker.text(f"Unsubscribe: {own}\nOr: {keep}\n") == f"Unsubscribe: {own}\nOr: {keep}\n"


def test_html_is_parsed_not_matched() -> None:
    """Links in comments, scripts and attribute text are no links; entities and odd quoting
    are read as a browser reads them."""
    links = Links(BASE_URL, Signer([SECRET]))
    html = (
        "<!-- <a href='https://c.example/comment'>x</a> -->\n"
        "<script>var a = '<a href=\"https://c.example/script\">';</script>\n"
        '<p title="<a href=https://c.example/attr>">t</p>\n'
        "<A HREF=https://c.example/caps?a=1&amp;b=2 target=_blank>caps</A>\n"
        "<a\n  href = 'https://c.example/multi'\n>multi</a>"
    )
    out = Tracker(links, 3, clicks=True, opens=False).html(html)
    found = [links.read_click(t) for t in _tokens(out, "/c/")]
    assert found == [(3, "https://c.example/caps?a=1&b=2"), (3, "https://c.example/multi")]
    assert out.count("c.example/comment") == out.count("c.example/script") == 1
    assert '<p title="<a href=https://c.example/attr>">' in out
    assert ' target="_blank">caps</A>' in out


# ---------------------------------------------------------------- the doors


@pytest.fixture
def sent(tracked: Path, cli: Cli) -> tuple[Path, str, str]:
    """The project after one `send`: message 1's click token and open token."""
    assert cli("-C", tracked, "send").exit_code == 0
    html = _part(_eml(tracked, 1), "html")
    assert html is not None
    (click,) = _tokens(html, "/c/")
    (pixel,) = _tokens(html, "/o/")
    return tracked, click, pixel


def test_following_a_link_redirects_and_records_a_click(sent: tuple[Path, str, str]) -> None:
    folder, click, _ = sent
    later = _sent_at(folder, 1) + timedelta(minutes=5)
    with web_rig(folder, clock=lambda: later) as rig:
        res = rig.client.get(f"/c/{click}", headers={"user-agent": BROWSER}, follow_redirects=False)
        again = rig.client.get(
            f"/c/{click}", headers={"user-agent": BROWSER}, follow_redirects=False
        )
    assert res.status_code == 302
    assert res.headers["location"] == LISTING
    assert "no-store" in res.headers["cache-control"]
    assert again.status_code == 302
    events = _events(folder, "click")
    # each click is recorded; the metric counts the message once
    assert len(events) == 2
    message_id, lead_id, channel, detail, _ = events[0]
    assert (message_id, lead_id, channel) == (1, 1, "email")
    assert detail == {"machine": False, "url": LISTING}


def test_an_open_returns_a_gif_and_records_an_open(sent: tuple[Path, str, str]) -> None:
    folder, _, pixel = sent
    later = _sent_at(folder, 1) + timedelta(minutes=5)
    with web_rig(folder, clock=lambda: later) as rig:
        res = rig.client.get(f"/o/{pixel}", headers={"user-agent": BROWSER})
        proxied = rig.client.get(
            f"/o/{pixel}", headers={"user-agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}
        )
        bad = rig.client.get(f"/o/{pixel[:-9]}AAAA.gif")
    assert res.status_code == 200
    assert res.content == PIXEL
    assert res.headers["content-type"] == "image/gif"
    assert "no-cache" in res.headers["cache-control"]
    assert proxied.status_code == 200
    assert bad.status_code == 404
    assert [e[3] for e in _events(folder, "open")] == [
        {"machine": False},
        {"machine": True, "why": "user_agent:google_image_proxy"},
    ]


def test_a_tampered_token_or_a_changed_url_never_redirects(sent: tuple[Path, str, str]) -> None:
    folder, click, pixel = sent
    sig = click.rpartition(".")[2]
    flipped = click[: -len(sig)] + sig[:4] + ("A" if sig[4] != "A" else "B") + sig[5:]
    changed_url = _forge(click, [1, "https://evil.example/phish"])
    other_message = _forge(click, [2, LISTING])
    open_as_click = pixel.removesuffix(".gif")
    with web_rig(folder) as rig:
        for token in (flipped, changed_url, other_message, open_as_click, "garbage"):
            res = rig.client.get(f"/c/{token}", follow_redirects=False)
            assert res.status_code == 404, token
            assert "location" not in res.headers
            assert "evil.example" not in res.text
    assert _events(folder, "click") == []


def test_a_click_redirects_even_when_it_cannot_be_recorded(
    sent: tuple[Path, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    folder, click, _ = sent
    with sqlite3.connect(folder / "campaignctl.db") as con:  # a write that fails (disk full...)
        con.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON event BEGIN SELECT RAISE(ABORT, 'no room'); END"
        )
    caplog.set_level(logging.INFO, logger="campaignctl.serve")
    with web_rig(folder) as rig:
        res = rig.client.get(f"/c/{click}", follow_redirects=False)
    assert res.status_code == 302
    assert res.headers["location"] == LISTING
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith("serve: error: click of message 1 not recorded: ")
    assert "no room" in errors[0]
    assert click not in errors[0]


def test_a_link_of_an_erased_message_still_redirects_and_records_nothing(
    sent: tuple[Path, str, str],
) -> None:
    folder, _, _ = sent
    link = Links(BASE_URL, Signer([SECRET])).click(999, GUIDE)
    with web_rig(folder) as rig:
        res = rig.client.get(link.removeprefix(BASE_URL), follow_redirects=False)
    assert (res.status_code, res.headers["location"]) == (302, GUIDE)
    assert _events(folder, "click") == []


def test_scanners_are_flagged_and_a_burst_flags_its_first_click_too(
    sent: tuple[Path, str, str],
) -> None:
    folder, click, _ = sent
    sent_at = _sent_at(folder, 1)
    now = [sent_at + timedelta(seconds=2)]
    other = Links(BASE_URL, Signer([SECRET])).click(1, GUIDE).removeprefix(BASE_URL)
    with web_rig(folder, clock=lambda: now[0]) as rig:
        ua = {"user-agent": BROWSER}
        rig.client.get(f"/c/{click}", headers=ua, follow_redirects=False)  # 2 s after the send
        now[0] = sent_at + timedelta(minutes=3)
        rig.client.head(f"/c/{click}", headers=ua)
        rig.client.get(f"/c/{click}", headers={"user-agent": "Barracuda Sentinel (EE)"})
        rig.client.get(f"/c/{click}", headers={"user-agent": ""}, follow_redirects=False)
        now[0] = sent_at + timedelta(hours=1)
        rig.client.get(f"/c/{click}", headers=ua, follow_redirects=False)  # a person
        now[0] += timedelta(milliseconds=300)  # the other link, 0.3 s later: a scanner
        rig.client.get(other, headers=ua, follow_redirects=False)
    whys = [
        (d.get("url"), d["machine"], d.get("why")) for _, _, _, d, _ in _events(folder, "click")
    ]
    assert whys == [
        (LISTING, True, "soon_after_send"),
        (LISTING, True, "head_request"),
        (LISTING, True, "user_agent:barracuda"),
        (LISTING, True, "no_user_agent"),
        (LISTING, True, "burst"),  # recorded as a person's, flagged by the click after it
        (GUIDE, True, "burst"),
    ]


# ---------------------------------------------------------------- the machine rules


def _hit(**overrides: Any) -> Hit:
    values: dict[str, Any] = {
        "kind": "click",
        "method": "GET",
        "user_agent": BROWSER,
        "at": T0 + timedelta(hours=1),
        "sent_at": T0,
        "client_ip": "203.0.113.9",
        "url": LISTING,
    }
    return Hit(**{**values, **overrides})


def test_a_browser_an_hour_after_the_send_is_a_person() -> None:
    assert machine_reason(_hit()) is None
    assert machine_reason(_hit(kind="open", url=None)) is None
    assert machine_reason(_hit(sent_at=None)) is None


def test_rule_head_requests() -> None:
    assert machine_reason(_hit(method="HEAD")) == "head_request"


def test_rule_no_user_agent() -> None:
    assert machine_reason(_hit(user_agent="  ")) == "no_user_agent"


@pytest.mark.parametrize(
    ("user_agent", "why"),
    [
        ("Mozilla/5.0 (Windows NT 5.1) Firefox/11.0 (via ggpht.com GoogleImageProxy)",
         "google_image_proxy"),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
         "yahoo_mail_proxy"),
        ("Microsoft Office Existence Discovery", "microsoft_scanner"),
        ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "microsoft_scanner"),
        ("Barracuda Sentinel (EE)", "barracuda"),
        ("Mimecast URL Protect", "mimecast"),
        ("Proofpoint URL Defense", "proofpoint"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot"),
        ("Mozilla/5.0 HeadlessChrome/120.0", "bot"),
        ("facebookexternalhit/1.1", "bot"),
        ("python-requests/2.31", "http_library"),
        ("curl/8.5.0", "http_library"),
    ],
)  # fmt: skip
def test_rule_known_user_agents(user_agent: str, why: str) -> None:
    assert machine_reason(_hit(user_agent=user_agent)) == f"user_agent:{why}"


def test_every_user_agent_pattern_has_a_case() -> None:
    """Each row of the table is reached by the cases above (no dead pattern)."""
    covered = {
        "google_image_proxy", "yahoo_mail_proxy", "microsoft_scanner", "barracuda", "mimecast",
        "proofpoint", "bot", "http_library",
    }  # fmt: skip
    assert {why for _, why in USER_AGENTS} - covered == {"security_gateway"}
    assert machine_reason(_hit(user_agent="Symantec Email Security")) == (
        "user_agent:security_gateway"
    )


def test_rule_apple_privacy_proxy() -> None:
    assert machine_reason(_hit(kind="open", user_agent="Mozilla/5.0")) == "apple_privacy_proxy"
    assert machine_reason(_hit(kind="open", client_ip="17.58.1.2")) == "apple_privacy_proxy"
    assert machine_reason(_hit(kind="open", client_ip="not-an-ip")) is None


def test_rule_soon_after_the_send() -> None:
    assert machine_reason(_hit(at=T0 + TOO_SOON - timedelta(seconds=1))) == "soon_after_send"
    assert machine_reason(_hit(at=T0 + TOO_SOON)) is None


def test_rule_several_links_within_a_second() -> None:
    at = T0 + timedelta(hours=1)
    assert machine_reason(_hit(at=at, earlier=[(at - BURST, GUIDE)])) == "burst"
    # the same link again is a person clicking twice; another link later is a person reading
    assert (
        machine_reason(_hit(at=at, earlier=[(at - timedelta(milliseconds=200), LISTING)])) is None
    )
    assert machine_reason(_hit(at=at, earlier=[(at - timedelta(seconds=5), GUIDE)])) is None
    # opens have no links
    assert machine_reason(_hit(kind="open", url=None, earlier=[(at, GUIDE)])) is None


# ---------------------------------------------------------------- click_rate


AB = """
[channels.email]
provider = "outbox"

[campaigns.promo]
kind = "blast"
status = "active"
stop_on = []

[[campaigns.promo.steps]]
name = "offer"
channel = "email"
subject = "An offer"
body = "unused"
[[campaigns.promo.steps.variants]]
name = "A"
body = "See https://homes.example/a"
[[campaigns.promo.steps.variants]]
name = "B"
body = "See https://homes.example/b"
[campaigns.promo.steps.ab]
test_fraction = 0.5
wait = "2d"
metric = "click_rate"
min_per_variant = 10
fallback = "A"
"""


def test_an_ab_test_is_decided_on_people_clicks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGNCTL_SECRET", SECRET)
    write_project(tmp_path, server_section(track_clicks=True), AB)
    cfg = load(tmp_path / "campaigns.toml")
    store = Store.for_config(cfg)
    add_leads(store, 200)
    eng = Engine(cfg, store)
    rng = random.Random(1)
    eng.run_pass(T0, rng)
    sent = [m for m in messages(store) if m.state == "sent"]
    a = [m for m in sent if m.variant == "A"]
    b = [m for m in sent if m.variant == "B"]
    assert len(a) > 20
    assert len(b) > 20
    links = Links(BASE_URL, Signer([SECRET]))
    now = [T0 + days(1)]
    with web_rig(tmp_path, clock=lambda: now[0]) as rig:

        def click(m: Any, ua: str = BROWSER) -> None:
            url = f"https://homes.example/{m.variant.lower()}"
            res = rig.client.get(
                links.click(m.id, url).removeprefix(BASE_URL),
                headers={"user-agent": ua},
                follow_redirects=False,
            )
            assert res.status_code == 302
            now[0] += timedelta(seconds=5)

        for m in a:  # every A message scanned: machine clicks count for nothing
            click(m, "Mimecast URL Protect")
        for m in a[::10]:
            click(m)
        for m in b[::2]:  # B's people click more, some twice: still one message each
            click(m)
            click(m)
    res = eng.run_pass(T0 + days(2), rng)
    assert res.total("sent") == 200 - len(sent)
    decided = store.engine.url.database
    assert decided is not None
    with sqlite3.connect(decided) as con:
        ((winner, rule, metric, figures, p_value),) = con.execute(
            "SELECT winner, rule, metric, figures, p_value FROM ab_decision"
        ).fetchall()
    assert (winner, rule, metric) == ("B", SIGNIFICANT, "click_rate")
    figs = json.loads(figures)
    assert figs["A"]["successes"] == len(a[::10])
    assert figs["B"]["successes"] == len(b[::2])
    _, p = two_proportion(len(b[::2]), len(b), len(a[::10]), len(a))
    assert p_value == pytest.approx(p)
    store.close()


def test_status_shows_each_variants_click_rate(tmp_path: Path, cli: Cli) -> None:
    write_project(tmp_path, server_section(track_clicks=True), AB)
    res = cli("-C", tmp_path, "status", "--format", "json")
    assert res.exit_code == 0, res.stderr
    (step,) = json.loads(res.stdout)["campaigns"][0]["steps"]
    assert [(v["name"], v["clicked"], v["rate"]) for v in step["variants"]] == [
        ("A", 0, 0.0),
        ("B", 0, 0.0),
    ]


def test_check_refuses_click_rate_without_click_tracking(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGNCTL_SECRET", SECRET)
    write_project(tmp_path, server_section(), AB)
    res = cli("-C", tmp_path, "check")
    assert res.exit_code == 1
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith("error")]
    assert "campaigns.promo.steps[0].ab.metric: click_rate counts tracked clicks" in line
    assert "set track_clicks = true in [server]" in line
    write_project(tmp_path, "", AB)  # no [server] at all
    res = cli("-C", tmp_path, "check")
    assert res.exit_code == 1
    assert "ab.metric: click_rate counts tracked clicks" in res.stdout


# ---------------------------------------------------------------- a real uvicorn


def test_a_click_through_a_real_server(sent: tuple[Path, str, str]) -> None:
    folder, click, pixel = sent
    with sqlite3.connect(folder / "campaignctl.db") as con:  # the send was an hour ago
        con.execute("UPDATE message SET sent_at = datetime(sent_at, '-1 hour')")
    with serve_process(folder) as (proc, url):
        ua = {"user-agent": BROWSER}
        res = httpx.get(f"{url}/c/{click}", headers=ua, timeout=10)
        opened = httpx.get(f"{url}/o/{pixel}", headers=ua, timeout=10)
        bad = httpx.get(f"{url}/c/{_forge(click, [1, 'https://evil.example/'])}", timeout=10)
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert res.status_code == 302
    assert res.headers["location"] == LISTING
    assert (opened.status_code, opened.content) == (200, PIXEL)
    assert bad.status_code == 404
    assert proc.returncode == 0
    assert [e[3] for e in _events(folder, "click")] == [{"machine": False, "url": LISTING}]
    assert [e[3] for e in _events(folder, "open")] == [{"machine": False}]
    assert click not in err
    assert pixel not in err
    assert f"GET /c/{click[:10]}… 302 " in err


def test_erasing_the_lead_keeps_the_verdict_and_drops_the_url(
    sent: tuple[Path, str, str], cli: Cli
) -> None:
    folder, click, _ = sent
    later = _sent_at(folder, 1) + timedelta(minutes=5)
    with web_rig(folder, clock=lambda: later) as rig:
        rig.client.get(f"/c/{click}", headers={"user-agent": BROWSER}, follow_redirects=False)
    res = cli("-C", folder, "leads", "delete", "maria@example.com", "--yes")
    assert res.exit_code == 0, res.stderr
    assert [e[3] for e in _events(folder, "click")] == [{"machine": False, "erased": True}]
