"""What the benchmarks that run a checkout's commands as whole processes share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def byte_compiled(code: Path) -> None:
    """Compile the checkout's modules ahead, as an installed package's are (pip compiles
    them): with PYTHONDONTWRITEBYTECODE set, as on these machines, every run would otherwise
    compile a hundred modules from source (~0.1 s) that mailmerge's installed modules never do.
    The files go in the checkout's __pycache__ folders (ignored by git)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(code / "campaignctl")],
        stdout=subprocess.DEVNULL,
        check=True,
    )
