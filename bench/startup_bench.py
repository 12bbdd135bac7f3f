"""Start-up time: `campaignctl --help` against `mailmerge --help`, median of N runs each.

    python bench/startup_bench.py [N]                     (default 21)
    python bench/startup_bench.py [N] --anchor DIR        small commands against another checkout

campaignctl runs as `python -m campaignctl` with PYTHONPATH set to this worktree (it is not
installed in the venv); mailmerge runs from its console script. Runs alternate, so both see
the same machine load. Goal (issue 2): campaignctl <= 1.1x mailmerge.

With `--anchor DIR` (e.g. `git worktree add /tmp/anchor15 4b975a0`), the small commands
(`status`, `check`, `plan`, `leads list`, `messages list`, `explain`) run on the bundled example
(its leads imported and sent once by each checkout, under bench/out/startup/) from this
checkout and from DIR, A B A B, and each prints both medians and the median of the pairs'
ratios. Goal (issue 15): `status` <= 0.3 s on the example.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def once(cmd: list[str], env: dict[str, str]) -> float:
    # run from the checkout on PYTHONPATH: `python -m` puts the working directory first on
    # sys.path, which would shadow another checkout's campaignctl with this one
    start = time.perf_counter()
    cwd = env.get("PYTHONPATH", str(REPO))
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - start


def cpu_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run: CPU (user + system) is what a loaded machine does not
    inflate."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = once(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


SMALL = {
    "status": ["status"],
    "check": ["check"],
    "plan": ["plan"],
    "leads list": ["leads", "list"],
    "messages list": ["messages", "list"],
    "explain": ["explain", "maria.santos@example.com"],
}


def example(code: Path, label: str) -> Path:
    """The bundled example under bench/out/startup/LABEL, its leads imported and a first send
    done by the checkout `code` (each checkout its own: an older one cannot open a database a
    newer one has migrated)."""
    import shutil

    folder = REPO / "bench" / "out" / "startup" / label
    if (folder / "complete").exists() and (folder / "complete").read_text() == str(code):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(REPO / "campaigns.toml", folder / "campaigns.toml")
    shutil.copytree(REPO / "examples", folder / "examples")
    env = {**os.environ, "PYTHONPATH": str(code)}
    for args in (["leads", "import", "examples/sunrise/leads.csv"], ["send"]):
        cmd = [sys.executable, "-m", "campaignctl", "-C", str(folder), *args]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=code)
    (folder / "complete").write_text(str(code))
    return folder


def small_commands(runs: int, anchor: Path) -> None:
    from checkouts import byte_compiled

    codes = {"this": REPO, "anchor": anchor}
    for code in codes.values():
        byte_compiled(code)
    folders = {label: example(code, label) for label, code in codes.items()}
    envs = {label: {**os.environ, "PYTHONPATH": str(code)} for label, code in codes.items()}
    print(f"load: {os.getloadavg()[0]:.2f}; medians of {runs} runs each, A B A B")
    for name, args in SMALL.items():
        cmds = {
            label: [sys.executable, "-m", "campaignctl", "-C", str(folders[label]), *args]
            for label in codes
        }
        for label, env in envs.items():
            once(cmds[label], env)  # warm the file cache
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in envs}
        for _ in range(runs):
            for label, env in envs.items():
                times[label].append(cpu_once(cmds[label], env))
        line = f"{name:<14}"
        for i, what in ((0, "wall"), (1, "CPU")):
            pairs = zip(times["this"], times["anchor"], strict=True)
            ratio = statistics.median(a[i] / b[i] for a, b in pairs)
            this, then = (statistics.median(t[i] for t in times[k]) * 1000 for k in envs)
            line += f" {what} {this:>5.0f} ms (anchor {then:>5.0f}, ratio {ratio:.2f})"
        print(line, flush=True)


def main() -> None:
    args = sys.argv[1:]
    if "--anchor" in args:
        at = args.index("--anchor")
        anchor = Path(args[at + 1]).resolve()
        del args[at : at + 2]
        small_commands(int(args[0]) if args else 11, anchor)
        return
    runs = int(args[0]) if args else 21
    from checkouts import byte_compiled

    byte_compiled(REPO)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ours = [sys.executable, "-m", "campaignctl", "--help"]
    theirs = [str(BIN / "mailmerge"), "--help"]
    once(ours, env), once(theirs, env)  # warm the file cache
    times: dict[str, list[float]] = {"campaignctl --help": [], "mailmerge --help": []}
    for _ in range(runs):
        times["campaignctl --help"].append(once(ours, env))
        times["mailmerge --help"].append(once(theirs, env))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, median in medians.items():
        print(f"{name:<22}{median * 1000:>8.0f} ms  (median of {runs})")
    ratio = medians["campaignctl --help"] / medians["mailmerge --help"]
    print(f"{'ratio':<22}{ratio:>8.2f}   {'ok' if ratio <= 1.1 else 'MISS'} (goal <= 1.1)")


if __name__ == "__main__":
    main()
