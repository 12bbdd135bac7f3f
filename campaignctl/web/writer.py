"""Group commit for the web side's writes.

Every request that writes (an unsubscribe, a status callback, an inbound message, a click) hands
its work to one writer thread, which runs whatever has queued up in one write transaction, each
piece in a savepoint of its own, and commits once. Under load a commit carries dozens of
requests, so the database's one-writer-at-a-time lock is taken a few times a second instead of
once per request, `send` keeps its share of it, and nobody waits past the busy timeout. A piece
that fails rolls back its savepoint alone; a transaction that cannot start or commit (the
database locked past the busy timeout, a full disk) fails every piece in it with that error.

`write(fn)` blocks until the batch holding `fn` has committed and returns `fn`'s result, so a
request answers only once what it did is on disk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from campaignctl.store.conn import savepoint

if TYPE_CHECKING:
    from campaignctl.store import Store
    from campaignctl.store.conn import Transaction

T = TypeVar("T")

#: Most requests' writes in one transaction.
MAX_BATCH = 256


@dataclass
class _Job(Generic[T]):
    fn: Callable[[Transaction], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Writer:
    """One thread that commits the queued writes in batches (see the module's doc)."""

    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self.batches = 0  # transactions committed (tests and the benchmark read them)
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def write(self, fn: Callable[[Transaction], T]) -> T:
        """Run `fn(session)` in the next batch's transaction; its result once committed, or the
        error it (or the transaction) raised."""
        self._start()
        job: _Job[T] = _Job(fn)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="campaignctl-web-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                jobs.append(nxt)
            self._commit(jobs)

    def _commit(self, jobs: list[_Job[Any]]) -> None:
        try:
            with self.store.write() as session:
                for job in jobs:
                    try:
                        with savepoint(session):
                            job.result = job.fn(session)
                    except Exception as exc:
                        job.error = exc
            self.batches += 1
        except BaseException as exc:  # the transaction itself: every piece in it failed
            for job in jobs:
                if job.error is None:
                    job.error, job.result = exc, None
        finally:
            for job in jobs:
                job.done.set()
