"""`campaignctl serve` under load: signed Twilio status callbacks and incoming messages (and
one-click unsubscribe POSTs when the branch has `web/unsubscribe.py`) against a real uvicorn on
loopback, at a steady rate, WHILE a `campaignctl send` (outbox channel, many messages) runs on
the same SQLite database (issue 13: >= 500 requests/s for 60 s, 0 lost events, 0 "database is
locked").

    python bench/serve_load.py [DURATION_S] [--rate N] [--leads N] [--connections N]
                               [--no-send] [--profile]

`--no-send` runs `serve` alone (to compare); `--profile` records serve's stacks with py-spy
(`pip install py-spy`) into bench/out/serve_load/profile.txt (folded, one line a stack).

Every request is built (and signed with twilio's RequestValidator) before the clock starts; a
small asyncio HTTP/1.1 client keeps `--connections` keep-alive connections and sends request k
at start + k/rate (open loop: a late answer does not slow the schedule down, and latency is
counted from when the request was due). Each status callback is about a message of its own (a
"delivered" or "read") and each incoming message has its own sid, so every 2xx must leave
exactly one event: the bench counts them in the database afterwards. serve's stderr is
searched for "database is locked" and tracebacks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from benchlib import OUT, REPO, bulk_leads, fresh_project, header, now

from campaignctl.store.schema import MESSAGE, SENT

ACCOUNT = "AC" + "0" * 31 + "1"
TOKEN = "bench-auth-token-0123456789abcdef"
SECRET = "bench-signing-key-0123456789abcdef"
BASE = "https://out.bench.example"
OUR_SMS = "+15005550006"


def _args() -> tuple[list[str], dict[str, int]]:
    """Positional arguments, and `--name N` options."""
    positional: list[str] = []
    options: dict[str, int] = {}
    argv = iter(sys.argv[1:])
    for a in argv:
        if a in ("--no-send", "--profile"):
            continue
        if a.startswith("--"):
            options[a] = int(next(argv))
        else:
            positional.append(a)
    return positional, options


def project(leads: int) -> Path:
    toml = (
        header()
        + f"""
[channels.email]
provider = "outbox"

[channels.sms]
provider = "twilio"
from = "{OUR_SMS}"
api_base = "http://127.0.0.1:9"

[server]
public_base_url = "{BASE}"
secret_env = "CAMPAIGNCTL_SECRET"

[campaigns.bulk]
status = "active"

[[campaigns.bulk.steps]]
name = "hello"
channel = "email"
subject = "Hello {{{{ lead.first_name }}}}"
body = "Hi {{{{ lead.first_name }}}}, a short note from the benchmark."
"""
    )
    cfg, store = fresh_project("serve_load", toml)
    bulk_leads(store, leads)
    # one SMS already handed to Twilio per lead: what the status callbacks are about
    from sqlalchemy import insert

    t = now()
    with store.write() as s:
        s.connection().execute(
            insert(MESSAGE),
            [
                {
                    "campaign": "texts",
                    "step": "hello",
                    "step_index": 0,
                    "lead_id": i + 1,
                    "channel": "sms",
                    "state": SENT,
                    "due_at": t,
                    "sent_at": t,
                    "attempts": 1,
                    "provider_id": _sms_sid(i),
                    "recipient": "",
                    "updated_at": t,
                    "trigger_event": 0,
                }
                for i in range(leads)
            ],
        )
    store.close()
    return cfg.path.parent


def _sms_sid(i: int) -> str:
    return f"SM{i:032x}"


def _phone_of(store_path: Path) -> list[str]:
    import sqlite3

    con = sqlite3.connect(store_path)
    try:
        return [r[0] for r in con.execute("SELECT phone FROM lead ORDER BY id")]
    finally:
        con.close()


def requests(folder: Path, total: int, leads: int, host: str) -> tuple[list[bytes], list[str]]:
    """`total` ready-to-send HTTP requests, and the kind of each."""
    from twilio.request_validator import RequestValidator

    from campaignctl.config import load
    from campaignctl.web.links import Links

    validator = RequestValidator(TOKEN)
    cfg = load(folder / "campaigns.toml")
    links = Links.for_config(cfg, {"CAMPAIGNCTL_SECRET": SECRET})
    assert links is not None
    unsubscribe = importlib.util.find_spec("campaignctl.web.unsubscribe") is not None
    phones = _phone_of(folder / "campaignctl.db")
    kinds: list[str] = []
    out = []
    status_n = 0
    for k in range(total):
        slot = k % 10
        if slot < 6 and status_n < leads:  # 60%: a status callback, each about its own message
            i = status_n
            status_n += 1
            status = "read" if i % 3 == 0 else "delivered"
            form = {
                "AccountSid": ACCOUNT,
                "ApiVersion": "2010-04-01",
                "From": OUR_SMS,
                "MessageSid": _sms_sid(i),
                "MessageStatus": status,
                "SmsSid": _sms_sid(i),
                "SmsStatus": status,
                "To": phones[i],
            }
            path, kind = "/twilio/status", "status"
        elif slot < 9 or not unsubscribe:  # 30%: an incoming message (5% of them STOP)
            i = k % leads
            body = "STOP" if k % 20 == 7 else "Thanks, is it still available?"
            form = {
                "AccountSid": ACCOUNT,
                "ApiVersion": "2010-04-01",
                "Body": body,
                "From": phones[i],
                "MessageSid": f"MM{k:032x}",
                "NumMedia": "0",
                "SmsMessageSid": f"MM{k:032x}",
                "SmsStatus": "received",
                "To": OUR_SMS,
            }
            path, kind = "/twilio/inbound", "inbound"
        else:  # 10%: a one-click unsubscribe (RFC 8058), when the branch has the door
            token = links.unsubscribe(k % leads + 1, "email").removeprefix(links.base_url)
            out.append(_http(token, b"List-Unsubscribe=One-Click", {}, host))
            kinds.append("unsubscribe")
            continue
        body_bytes = urlencode(form).encode()
        signature = validator.compute_signature(BASE + path, form)
        out.append(_http(path, body_bytes, {"X-Twilio-Signature": signature}, host))
        kinds.append(kind)
    return out, kinds


_LENGTH = re.compile(rb"(?i)content-length: *(\d+)")


def _http(path: str, body: bytes, headers: dict[str, str], host: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def load(
    host: str, port: int, reqs: list[bytes], kinds: list[str], rate: float, connections: int
) -> tuple[list[float], Counter[str], Counter[str], float]:
    """Send `reqs` at `rate` per second over `connections` keep-alive connections, for as
    long as the schedule lasts (plus 2 s): what is still unsent then is left out, counted
    as `behind` in the answers. Returns the latencies, the answers by status, the 2xx by kind
    and the seconds it took."""
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    done: Counter[str] = Counter()
    nxt = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    stop = start + len(reqs) / rate + 2

    async def worker() -> None:
        nonlocal nxt
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while nxt < len(reqs):
                if loop.time() > stop:
                    codes["behind"] += len(reqs) - nxt
                    nxt = len(reqs)
                    break
                k = nxt
                nxt += 1
                due = start + k / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    writer.write(reqs[k])
                    head = await reader.readuntil(b"\r\n\r\n")
                    found = _LENGTH.search(head)  # none on a 204
                    length = int(found.group(1)) if found else 0
                    if length:
                        await reader.readexactly(length)
                    code = head[9:12].decode()
                    codes[code] += 1
                    if code.startswith("2"):
                        done[kinds[k]] += 1
                    if b"connection: close" in head.lower():
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    codes[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                latencies.append(loop.time() - due)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies, codes, done, loop.time() - start


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000 if s else 0.0


def main() -> int:
    positional, options = _args()
    duration = int(positional[0]) if positional else options.get("--duration", 60)
    rate = options.get("--rate", 500)
    connections = options.get("--connections", 32)
    total = duration * rate
    leads = options.get("--leads", max(20000, total))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CAMPAIGNCTL_SECRET": SECRET,
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TOKEN,
    }
    t0 = time.perf_counter()
    folder = project(leads)
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(folder)]
    # enrol every lead first (one big pass of its own), so the timed send only sends
    subprocess.run([*cmd, "send", "--limit", "1", "--quiet"], env=env, check=True)
    print(f"setup: {leads} leads, {leads} SMS sent, in {time.perf_counter() - t0:.1f}s")

    err_path = OUT / "serve_load" / "serve.stderr"
    with err_path.open("w") as err_file:
        serve = subprocess.Popen(
            [*cmd, "serve", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True
        )
        assert serve.stderr is not None
        first = serve.stderr.readline()
        err_file.write(first)
        found = re.search(r"on http://([\d.]+):(\d+)", first)
        if not found:
            serve.kill()
            print(f"serve did not start: {first}{serve.stderr.read()}")
            return 1
        host, port = found.group(1), int(found.group(2))
        # serve's log goes to a file from here on, without a thread of ours in the way
        pump = subprocess.Popen(["cat"], stdin=serve.stderr, stdout=err_file)
        reqs, kinds = requests(folder, total, leads, urlsplit(BASE).netloc)
        beside = ["send", "--max-time", f"{duration + 5}s"]
        if "--no-send" in sys.argv:  # the server alone, to compare
            beside = ["status", "--format", "json"]
        sender = subprocess.Popen(
            [*cmd, *beside],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        spy = None
        if "--profile" in sys.argv:  # where serve spends its time: py-spy's folded stacks
            spy = subprocess.Popen(
                [
                    *("py-spy", "record", "-p", str(serve.pid), "-f", "raw", "-d", str(duration)),
                    *("-o", str(OUT / "serve_load" / "profile.txt"), "--threads"),
                ],
                stdout=subprocess.DEVNULL,
            )
        serve_cpu0, client_cpu0 = _cpu(serve.pid), time.process_time()
        try:
            latencies, codes, done, elapsed = asyncio.run(
                load(host, port, reqs, kinds, rate, connections)
            )
            serve_cpu = _cpu(serve.pid) - serve_cpu0
            client_cpu = time.process_time() - client_cpu0
            serve_rss = _rss(serve.pid)
            if spy is not None:
                spy.wait()
        finally:
            sent_out, _ = sender.communicate(timeout=duration + 120)
            serve.terminate()
            serve.wait(timeout=30)
            pump.wait(timeout=30)
    log = err_path.read_text()

    import sqlite3

    con = sqlite3.connect(folder / "campaignctl.db")
    # the Twilio requests' events (an unsubscribe door may record its own as well)
    events = con.execute(
        "SELECT count(*) FROM event WHERE source_id LIKE '%:SM%' OR source_id LIKE '%:MM%'"
    ).fetchone()[0]
    emails = con.execute(
        "SELECT count(*) FROM message WHERE channel = 'email' AND state = 'sent'"
    ).fetchone()[0]
    con.close()
    expected = done["status"] + done["inbound"]
    n = max(len(latencies), 1)
    last = sent_out.strip().splitlines()[-1] if sent_out.strip() else "-"
    for line in (
        f"requests answered: {len(latencies)} (2xx: {dict(done)}) in {elapsed:.1f}s = "
        f"{n / elapsed:.0f}/s "
        f"(target {rate}/s, {connections} connections)",
        f"latency from due time: p50 {_pct(latencies, 0.5):.1f} ms, "
        f"p99 {_pct(latencies, 0.99):.1f} ms, max {_pct(latencies, 1.0):.1f} ms",
        f"CPU: serve {serve_cpu:.1f}s ({serve_cpu / n * 1000:.2f} ms a request, "
        f"{serve_cpu / elapsed * 100:.0f}% of a core), client {client_cpu:.1f}s "
        f"({client_cpu / elapsed * 100:.0f}% of a core)",
        f"answers by status: {dict(sorted(codes.items()))}",
        f"events recorded: {events} of the {expected} Twilio requests answered 2xx, each one "
        f"(lost: {expected - events})",
        f"send beside it: {emails} emails sent in all; its last line: {last}",
        f"serve's log: {log.count('database is locked')} 'database is locked', "
        f"{log.count('Traceback')} tracebacks, {log.count(' 503 ')} 503s",
        f"peak RSS: serve {serve_rss:.0f} MB, client {_rss_self():.0f} MB",
        f"load average at the end: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores",
    ):
        print(line)
    missed = n / elapsed < rate * 0.95 or expected != events
    return 1 if missed or "database is locked" in log else 0


def _rss_self() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss(pid: int) -> float:
    """Peak RSS of process `pid` in MB (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
