"""One-click unsubscribes against a real `campaignctl serve` on loopback, while a `send` runs on
the same SQLite database: requests per second, latency, lost opt-outs, "database is locked".

Client threads POST RFC 8058's `List-Unsubscribe=One-Click` to distinct leads' `/u/TOKEN` links
for SECONDS seconds (keep-alive connections), while `campaignctl send` emails every lead through
an outbox channel. Afterwards every 200 must be an opt-out in the database (0 lost), and neither
process may have logged "database is locked". Prints the figures and the peak RSS of the
children (serve and send).

    .venv/bin/python bench/unsubscribe_bench.py [SECONDS] [LEADS] [THREADS]
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from benchlib import REPO, bulk_leads, fresh_project, header

from campaignctl.web.links import Links
from campaignctl.web.tokens import Signer

SECRET = "bench-signing-key-0123456789abcdef"
BASE = "https://out.bench.example"
TOML = f"""
[server]
public_base_url = "{BASE}"

[channels.out]
provider = "outbox"
kind = "email"

[campaigns.bench]
status = "active"
[[campaigns.bench.steps]]
channel = "out"
subject = "Hello"
body = "Hi {{{{ lead.first_name }}}}"
"""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
    leads = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    cfg, store = fresh_project("unsubscribe", header() + TOML)
    bulk_leads(store, leads)
    store.close()
    folder = cfg.path.parent
    env = {**os.environ, "CAMPAIGNCTL_SECRET": SECRET, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "campaignctl", "-C", str(folder)]
    serve = subprocess.Popen(
        [*cmd, "serve", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True
    )
    assert serve.stderr is not None
    ready = re.search(r"on (http://127\.0\.0\.1:\d+)", serve.stderr.readline())
    assert ready, "serve did not start"
    url = ready.group(1)
    serve_log: list[str] = []
    reader = threading.Thread(target=lambda: serve_log.extend(serve.stderr or []), daemon=True)
    reader.start()
    send = subprocess.Popen([*cmd, "send", "--quiet"], env=env, stderr=subprocess.PIPE, text=True)
    links = Links(BASE, Signer([SECRET]))
    next_lead = iter(range(1, leads + 1))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.perf_counter() < deadline:
                with lock:
                    lead = next(next_lead, None)
                if lead is None:
                    return
                path = links.unsubscribe(lead, "out").removeprefix(BASE)
                t0 = time.perf_counter()
                res = http.post(
                    path,
                    content=b"List-Unsubscribe=One-Click",
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )
                took = time.perf_counter() - t0
                with lock:
                    latencies.append(took)
                    statuses[res.status_code] = statuses.get(res.status_code, 0) + 1

    started = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    serve_cpu = _cpu_seconds(serve.pid)
    send_running = send.poll() is None
    if send_running:
        send.terminate()  # finishes the email in flight, then stops
    _, send_err = send.communicate()
    serve.terminate()
    serve.wait(timeout=30)
    reader.join(timeout=5)

    from campaignctl.config import load
    from campaignctl.store import Store
    from campaignctl.store.leads import all_optouts

    store = Store.for_config(load(cfg.path))
    with store.read() as s:
        opted = sum(1 for _ in all_optouts(s))
    store.close()
    sent = len(list((folder / "outbox").glob("*.eml"))) if (folder / "outbox").exists() else 0
    ok = statuses.get(200, 0)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    locked = sum("database is locked" in line for line in [*serve_log, *send_err.splitlines()])
    print(f"{leads:,} leads, {threads} client threads, {seconds:.0f} s, a send running beside")
    print(
        f"  {len(latencies):,} POSTs in {elapsed:.1f} s: {len(latencies) / elapsed:,.0f}/s; "
        f"p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
    print(f"  statuses {dict(sorted(statuses.items()))}; opt-outs in the database {opted:,}")
    per = serve_cpu / max(1, len(latencies)) * 1000
    print(f"  serve used {serve_cpu:.1f} CPU s: {per:.1f} ms of CPU per POST")
    print(f"  lost: {ok - opted}; 'database is locked' lines: {locked}")
    print(
        f"  send: exit {send.returncode}, {sent:,} emails written"
        f"{' (stopped when the clients did)' if send_running else ''}"
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  peak RSS of a child (serve or send): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
