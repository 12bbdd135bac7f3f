"""The benchmarks' runner and their inputs: `bench/run.py --help` prints help and runs nothing,
and no benchmark reads a file outside the repository."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import REPO

BENCH = REPO / "bench"


def test_run_help_prints_help_and_runs_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bench/run.py")
    assert "--quick" in done.stdout
    assert "import_bench" in done.stdout  # the benchmarks it knows are listed
    assert "===" not in done.stdout  # none was started


def test_run_refuses_an_unknown_benchmark() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "no_such_bench"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no benchmark no_such_bench" in done.stderr
    assert "===" not in done.stdout


def test_benchmarks_read_nothing_outside_the_repository() -> None:
    # (a usage line naming the machine's venv, `/work/venv/bin/python bench/x.py`, reads nothing)
    outside = re.compile(r"\.\./|REPO\.parent|/work/(?!venv/bin/python )|\bshared/")
    for script in sorted(BENCH.glob("*.py")):
        text = script.read_text()
        hits = [m.group(0) for m in outside.finditer(text)]
        assert not hits, f"{script.name} refers outside the repository: {hits}"
    assert (BENCH / "gen_leads.py").is_file()
