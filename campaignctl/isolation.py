"""Untrusted templates rendered in a child process with hard limits on memory, CPU and time.

The sandbox's caps (sandbox.py) stop the obvious ways to take gigabytes or minutes, but a
sandbox cannot be made safe by filtering operators: two nested loops are enough. `check`, the
editing commands (through `checks.check_text`) and `preview` read campaign files that may come
from a pull request, so they do their rendering and audience evaluation in one worker process:

- its address space may grow by `MEMORY_LIMIT` bytes (RLIMIT_AS): a template asking for more
  gets a MemoryError, reported as a problem of that template;
- each template or audience gets `CPU_LIMIT` seconds of CPU at least (RLIMIT_CPU, restarted
  for every one): past it the kernel kills the worker;
- the parent waits `WALL_LIMIT` seconds (give or take a tenth) for the worker to begin its
  next step (a template including a FIFO blocks without using CPU), then kills it.

Before each template or audience the worker tells the parent its key path (`working_on`), so a
killed worker is blamed on that key. `run_limited` raises `LimitExceeded` naming it; `check`
then runs a new worker that reports that key as exceeding the limit without rendering it, so
one bad template never hides the other problems. `check --leads` renders the same few
templates for every lead, so a key goes through the pipe once; each step then only writes the
key's number and counts itself in memory the two processes share (`_Board`), and the worker
moves its CPU limit once a tenth of `CPU_LIMIT` has been used (a message and three system
calls per render were half of `check --leads`'s time).

A single-threaded parent forks the worker (a few milliseconds); one with threads uses the
'forkserver' start method, which is safe with threads.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from campaignctl.errors import CampaignctlError, ExitCode

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

#: Bytes of memory (address space) a worker may take beyond what it starts with.
MEMORY_LIMIT = 1 << 30
#: Seconds of CPU each template or audience may use in a worker.
CPU_LIMIT = 10
#: Seconds the parent waits for a worker to move on to its next template or audience.
WALL_LIMIT = 30

T = TypeVar("T")

#: In a worker: where to report progress, and the keys that exceeded a limit in an earlier one.
_report: Callable[[str], None] | None = None
_exceeded: Mapping[str, str] = {}


class LimitExceeded(CampaignctlError):
    """A template or audience (`key`, its key path) exceeded a worker's limit."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key, self.detail = key, message


def memory_message() -> str:
    """What a template that ran out of the worker's memory is told."""
    return f"rendering exceeded the {MEMORY_LIMIT / (1 << 30):g} GiB memory limit"


def working_on(key: str) -> None:
    """Say that the template or audience at `key` is about to be compiled or evaluated.

    In a worker: its CPU budget starts again and the parent learns whom to blame; raises
    LimitExceeded when `key` exceeded a limit in an earlier worker. Elsewhere: nothing.
    """
    if key in _exceeded:
        raise LimitExceeded(key, _exceeded[key])
    if _report is not None:
        _report(key)


def _cpu_budget(ahead: float = 0.0) -> None:
    """`CPU_LIMIT` more seconds of CPU from now, and `ahead` more: the CPU that may be used
    before the limit is moved again."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + ahead) + CPU_LIMIT
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _limit_memory() -> None:
    import resource

    with open("/proc/self/statm") as f:  # the first field is the address space, in pages
        used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = used + MEMORY_LIMIT
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a worker killed for CPU dumps no core


class _Board:
    """What the worker is at, in memory it shares with the parent: the number of its current
    key (the order in which its keys went through the pipe; -1 before the first) and how many
    steps it has begun (the parent's sign of progress)."""

    def __init__(self, ctx: Any) -> None:
        self.current = ctx.RawValue("q", -1)
        self.steps = ctx.RawValue("Q", 0)


def _worker(
    conn: Connection,
    board: _Board,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    exceeded: Mapping[str, str],
    limits: tuple[int, int],
    environ: Mapping[str, str],
) -> None:
    global _report, _exceeded, MEMORY_LIMIT, CPU_LIMIT
    # the limits as the parent has them (a forkserver's child starts afresh)
    MEMORY_LIMIT, CPU_LIMIT = limits
    _exceeded = exceeded
    # the parent's environment as it is now (a forkserver's children have the one it started
    # with): what `check` says of keys and tokens is about this run's environment
    os.environ.clear()
    os.environ.update(environ)

    import time

    # when the CPU limit was last moved, by the clock on the wall: the worker has one thread,
    # so less time than that has passed on its CPU (the CPU clock is a system call, the wall's
    # is not)
    moved = 0.0
    cpu_step = CPU_LIMIT / 10
    numbers: dict[str, int] = {}  # the keys the parent has, by their number

    def report(key: str) -> None:
        nonlocal moved
        now = time.monotonic()
        if now - moved >= cpu_step:
            _cpu_budget(ahead=cpu_step)
            moved = now
        n = numbers.get(key)
        if n is None:
            n = numbers[key] = len(numbers)
            conn.send(("key", key))
        board.current.value = n
        board.steps.value += 1

    _report = report
    try:
        # without /proc (not Linux) the CPU and wall-clock limits still hold
        with contextlib.suppress(OSError, ValueError):
            _limit_memory()
        _cpu_budget(ahead=cpu_step)
        moved = time.monotonic()
        result = fn(*args)
    except CampaignctlError as exc:
        import pickle

        try:  # the same class when it pickles (its attributes come back with it)
            pickle.loads(pickle.dumps(exc))
            conn.send(("raise", exc))
        except Exception:
            code = int(getattr(exc, "exit_code", 1))
            conn.send(("error", (exc.message, exc.hint, code)))
    except MemoryError:
        conn.send(("memory", None))
    except BaseException:
        import traceback

        conn.send(("crash", traceback.format_exc()))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


def _context() -> Any:
    import multiprocessing
    import threading

    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver")


def run_limited(fn: Callable[..., T], *args: Any, exceeded: Mapping[str, str] | None = None) -> T:
    """`fn(*args)` in a worker process with the limits above; its result (pickled back).

    `fn` and its arguments must be picklable (a module-level function). A CampaignctlError in
    the worker is raised here with its message, hint and exit code; a limit reached while a
    template or audience was at work raises LimitExceeded naming its key (empty when none was).
    `exceeded` maps keys that exceeded a limit earlier to their message (see `working_on`).
    """
    import signal
    import time

    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    board = _Board(ctx)
    limits = (MEMORY_LIMIT, CPU_LIMIT)
    proc = ctx.Process(
        target=_worker,
        args=(sender, board, fn, args, dict(exceeded or {}), limits, dict(os.environ)),
        daemon=True,
    )
    proc.start()
    sender.close()
    keys: list[str] = []

    def blamed() -> str:
        """The key the worker was at (its number read once it stopped or was killed)."""
        while receiver.poll(0):  # keys it sent before its last step
            try:
                kind, value = receiver.recv()
            except EOFError:
                break
            if kind == "key":
                keys.append(value)
        n = board.current.value
        return keys[n] if 0 <= n < len(keys) else ""

    steps, moved_at = 0, time.monotonic()
    try:
        while True:
            if not receiver.poll(WALL_LIMIT / 10):
                now = time.monotonic()
                if board.steps.value != steps:  # a step began since: it has its full time
                    steps, moved_at = board.steps.value, now
                elif now - moved_at >= WALL_LIMIT:
                    proc.kill()
                    proc.join()
                    raise LimitExceeded(blamed(), f"rendering took longer than {WALL_LIMIT} s")
                continue
            try:
                kind, value = receiver.recv()
            except EOFError:
                proc.join()
                key = blamed()
                if proc.exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
                    raise LimitExceeded(
                        key, f"rendering exceeded the {CPU_LIMIT} s CPU limit"
                    ) from None
                raise LimitExceeded(
                    key, f"rendering stopped the worker process (exit status {proc.exitcode})"
                ) from None
            if kind == "key":
                keys.append(value)
            elif kind == "ok":
                return value  # type: ignore[no-any-return]
            elif kind == "memory":
                raise LimitExceeded(blamed(), memory_message())
            elif kind == "raise":
                raise value
            elif kind == "error":
                message, hint, code = value
                err = CampaignctlError(message, hint)
                err.exit_code = ExitCode(code)
                raise err
            else:
                raise RuntimeError(f"the rendering worker failed:\n{value}")
    finally:
        receiver.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
