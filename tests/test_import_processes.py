"""`leads import` with workers, as the user runs it: no traceback on stderr and no process left
behind (import process, workers, forkservers, resource tracker), whether the import completes
or is interrupted with Ctrl-C. Processes are found by session: each import runs in its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import write_project

ROWS = 40_000


def leads_csv(folder: Path, n: int = ROWS) -> Path:
    path = folder / "leads.csv"
    rows = [f"p{i}@x.com,+1415{200 + i // 10000:03d}{i % 10000:04d},Pat" for i in range(n)]
    path.write_text("email,phone,first_name\n" + "\n".join(rows) + "\n")
    return path


def in_session(sid: int) -> list[str]:
    """The live processes of session `sid` (zombies are dead: their parent reaps them)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(f"{entry.name} {state} {cmd[:120]}")
    return found


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action, as a command started from a terminal has it: a test suite run
    in the background of a non-interactive shell (`.ci/run &`) ignores SIGINT, and a process
    started with SIGINT ignored keeps it ignored (Python installs no handler then)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_import(project: Path, csv_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CAMPAIGNCTL_IMPORT_WORKERS": "2", "COLUMNS": "120"}
    return subprocess.Popen(
        [sys.executable, "-m", "campaignctl", "-C", str(project), "leads", "import", str(csv_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own session (and process group), as a terminal gives
        preexec_fn=_as_from_a_terminal,
    )


def test_imports_leave_no_traceback_and_no_process(tmp_path: Path) -> None:
    csv_path = leads_csv(tmp_path)
    for run in range(4):
        project = tmp_path / f"p{run}"
        project.mkdir()
        write_project(project)
        proc = start_import(project, csv_path)
        out, err = proc.communicate(timeout=600)
        left = in_session(proc.pid)  # at once: the command is over, so must its processes be
        assert proc.returncode == 0, err
        assert err == "", err
        assert left == [], f"run {run}: left behind: {left}"
        assert f"{ROWS:,}" in out


def test_ctrl_c_during_an_import_leaves_no_traceback_and_no_process(tmp_path: Path) -> None:
    # long enough to be still running when interrupted, however fast the machine
    csv_path = leads_csv(tmp_path, 10 * ROWS)
    write_project(tmp_path)
    proc = start_import(tmp_path, csv_path)
    # Wait for the workers: CLI, resource tracker, forkserver, import process, its forkserver
    # and two workers.
    deadline = time.monotonic() + 120
    while len(in_session(proc.pid)) < 7 and proc.poll() is None:
        assert time.monotonic() < deadline, in_session(proc.pid)
        time.sleep(0.02)
    assert proc.poll() is None, "the import ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    _out, err = proc.communicate(timeout=120)
    left = in_session(proc.pid)
    assert proc.returncode == 130, err
    assert err.strip() == "campaignctl: error: interrupted", err
    assert left == [], f"left behind: {left}"
