"""Running campaignctl: the in-process runner's type, `status` as data, `send` as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import Result

from tests.support.project import REPO

Cli = Callable[..., Result]


def status_steps(cli: Cli, folder: Path) -> dict[str, dict[str, Any]]:
    """`status --format json`, as {step name: its counts} over every campaign."""
    res = cli("-C", folder, "status", "--format", "json")
    assert res.exit_code == 0, res.stderr
    return {s["name"]: s for c in json.loads(res.stdout)["campaigns"] for s in c["steps"]}


def send_process(folder: Path, *args: str) -> subprocess.Popen[str]:
    """A real `campaignctl send` process (the environment as it is now: credentials included)."""
    return subprocess.Popen(
        [sys.executable, "-m", "campaignctl", "-C", str(folder), "send", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
