"""Locks a killed process never leaves behind: OS file locks (flock) beside a SQLite database,
and the `Lock` interface a send lock offers (PostgreSQL has none: its daemons run side by
side, docs/scaling.md)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Protocol

from campaignctl.errors import LockHeldError


class Lock(Protocol):
    """One holder at a time; `holder()` names its pid, `is_held()` probes without taking it."""

    what: str

    def holder(self) -> str | None: ...

    def is_held(self) -> bool: ...

    def acquire(self, hint: str | None = None, timeout: float = 0.0) -> Lock: ...

    def release(self) -> None: ...

    def __enter__(self) -> Lock: ...

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class FileLock:
    """An exclusive, non-blocking flock on `path`; the holder's pid is written into the file."""

    def __init__(self, path: Path, what: str = "lock") -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def holder(self) -> str | None:
        """The pid written by whoever holds (or last held) the lock."""
        try:
            return self.path.read_text().strip() or None
        except OSError:
            return None

    def is_held(self) -> bool:
        """Whether some process holds the lock now (a shared probe: it never takes it)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a shared lock we may have got
        return False

    def acquire(self, hint: str | None = None, timeout: float = 0.0) -> FileLock:
        """Take the lock, or raise LockHeldError; with `timeout`, wait up to that many seconds
        for the holder to finish (short critical sections such as a campaign file edit)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
            os.close(fd)
            pid = self.holder()
            who = f" (pid {pid})" if pid else ""
            raise LockHeldError(
                f"{self.path}: another process holds the {self.what}{who}",
                hint or "it will be free when that run ends; cron can simply try again later",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
