"""Untrusted templates rendered in a child process with hard limits on memory, CPU and time.

The sandbox's caps (sandbox.py) stop the obvious ways to take gigabytes or minutes, but a
sandbox cannot be made safe by filtering operators: two nested loops are enough. `check`, the
editing commands (through `checks.check_text`) and `preview` read campaign files that may come
from a pull request, so they do their rendering and audience evaluation in one worker process:

- its address space may grow by `MEMORY_LIMIT` bytes (RLIMIT_AS): a template asking for more
  gets a MemoryError, reported as a problem of that template;
- each template or audience gets `CPU_LIMIT` seconds of CPU (RLIMIT_CPU, restarted for every
  one): past it the kernel kills the worker;
- the parent waits at most `WALL_LIMIT` seconds for the worker's next step (a template
  including a FIFO blocks without using CPU), then kills it.

Before each template or audience the worker tells the parent its key path (`working_on`), so a
killed worker is blamed on that key. `run_limited` raises `LimitExceeded` naming it; `check`
then runs a new worker that reports that key as exceeding the limit without rendering it, so
one bad template never hides the other problems.

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


def _cpu_budget() -> None:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + CPU_LIMIT
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


def _worker(
    conn: Connection,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    exceeded: Mapping[str, str],
    limits: tuple[int, int],
    environ: Mapping[str, str],
) -> None:
    global _report, _exceeded, MEMORY_LIMIT, CPU_LIMIT
    MEMORY_LIMIT, CPU_LIMIT = limits  # as the parent has them (forkserver starts afresh)
    _exceeded = exceeded
    # the parent's environment as it is now (a forkserver's children have the one it started
    # with): what `check` says of keys and tokens is about this run's environment
    os.environ.clear()
    os.environ.update(environ)

    def report(key: str) -> None:
        _cpu_budget()
        conn.send(("key", key))

    _report = report
    try:
        # without /proc (not Linux) the CPU and wall-clock limits still hold
        with contextlib.suppress(OSError, ValueError):
            _limit_memory()
        _cpu_budget()
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

    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_worker,
        args=(sender, fn, args, dict(exceeded or {}), (MEMORY_LIMIT, CPU_LIMIT), dict(os.environ)),
        daemon=True,
    )
    proc.start()
    sender.close()
    key = ""
    try:
        while True:
            if not receiver.poll(WALL_LIMIT):
                proc.kill()
                raise LimitExceeded(key, f"rendering took longer than {WALL_LIMIT} s")
            try:
                kind, value = receiver.recv()
            except EOFError:
                proc.join()
                if proc.exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
                    raise LimitExceeded(
                        key, f"rendering exceeded the {CPU_LIMIT} s CPU limit"
                    ) from None
                raise LimitExceeded(
                    key, f"rendering stopped the worker process (exit status {proc.exitcode})"
                ) from None
            if kind == "key":
                key = value
            elif kind == "ok":
                return value  # type: ignore[no-any-return]
            elif kind == "memory":
                raise LimitExceeded(key, memory_message())
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
