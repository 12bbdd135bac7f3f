"""The import process: a CSV file into the lead table, streamed, with worker processes.

An import streams the file: it is cut into chunks of whole records (`csvfile`), workers parse
and normalise them (`normalise`: email-validator and phonenumbers cost tens of microseconds a
row), and the rows are inserted in file order with `ON CONFLICT DO NOTHING`, so the unique email
and phone indexes find the duplicates; one `BEGIN IMMEDIATE` transaction per `COMMIT_ROWS`
rows. With workers, all of that runs in an import process of its own, started from the
forkserver, which has loaded only the `campaignctl.leads` package. Memory stays flat whatever
the file size; a killed import leaves whole transactions behind, and importing the file again
completes it (duplicates are counted, never inserted twice).

The import and worker processes load this package, so none of its modules imports SQL or CLI
code at the top (`tests/test_architecture.py` holds them to it).
"""

from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaignctl.errors import CampaignctlError
from campaignctl.leads.addresses import hasher
from campaignctl.leads.changes import TAGS_MODES, update_from_row
from campaignctl.leads.columns import map_columns, parse_mapping
from campaignctl.leads.csvfile import (
    Chunk,
    CsvFormat,
    LeadsInputError,
    inspect_csv,
    read_chunks,
)
from campaignctl.leads.normalise import Normaliser, Parsed, claim
from campaignctl.leads.report import ImportReport, Note

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Store
    from campaignctl.store.sqlite import RawConnection

COMMIT_ROWS = 100000  # rows per write transaction
# Below this size the start-up of worker processes costs more than it saves.
PARALLEL_BYTES = 4 * 1024 * 1024
WORKERS_ENV = "CAMPAIGNCTL_IMPORT_WORKERS"
#: The note on an imported lead whose address is on the suppression list.
SUPPRESSED_NOTE = "imported; address on the suppression list: it will never be messaged there"
# Parsed's fields by index, for rows that arrive as plain tuples
_EMAIL, _PHONE = Parsed._fields.index("email"), Parsed._fields.index("phone")
_NOTES, _DROPPED = Parsed._fields.index("notes"), Parsed._fields.index("dropped")
_REJECT = Parsed._fields.index("reject")


_worker: Normaliser | None = None


def _init_worker(normaliser: Normaliser) -> None:
    import signal

    global _worker
    _worker = normaliser
    # Ctrl-C reaches every process of the group. A worker starts from the forkserver with
    # Python's own SIGINT handler, so it would die of it with a traceback; the import process
    # stops the workers itself (the pool's shutdown).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _work(chunk: Chunk) -> list[tuple[Any, ...]]:
    assert _worker is not None
    # Plain tuples: they cross the process boundary several times faster than named ones.
    return _worker.chunk_fields(chunk)


def _normalised(
    normaliser: Normaliser, chunks: Iterator[Chunk], workers: int
) -> Generator[tuple[Chunk, Sequence[tuple[Any, ...]]], None, None]:
    """Normalise chunks in order, in `workers` processes (0: in this one): `Parsed` rows, or
    their fields as plain tuples (from workers: cheaper to unpickle than named ones)."""
    if workers <= 0:
        for chunk in chunks:
            yield chunk, normaliser.chunk(chunk)
        return
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor

    # forkserver: workers start from a small clean process, not a copy of this one (smaller,
    # and safe next to the progress bar's thread). A worker that dies raises BrokenProcessPool
    # here instead of hanging the import.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["campaignctl.leads.importer"])
    pool = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(normaliser,)
    )
    try:
        # A bounded window of chunks in flight keeps memory flat and the order of lines.
        pending: deque[tuple[Chunk, Future[list[tuple[Any, ...]]]]] = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_work, chunk)))
            if len(pending) >= 2 * workers:
                done, result = pending.popleft()
                yield done, result.result()
        while pending:
            done, result = pending.popleft()
            yield done, result.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Writer:
    """Deduplicates chunks against the database and inserts them through the database's raw
    driver: sqlite3 row by row, or psycopg with COPY a chunk at a time (`store.postgres`)."""

    def __init__(
        self,
        conn: RawConnection | Any,
        normaliser: Normaliser,
        report: ImportReport,
        rejects: _Rejects | None,
        *,
        now: datetime,
        dry_run: bool,
        update: bool = False,
        replace_tags: bool = False,
        raw: Any = None,
    ) -> None:
        self.conn = conn
        self.normaliser = normaliser
        self.report = report
        self.rejects = rejects
        self.dry_run = dry_run
        self.update = update
        self.replace_tags = replace_tags
        self.named = bytearray()  # `--update`: the leads rows of this file named (`_seen`)
        if raw is None:
            from campaignctl.store import sqlite as raw

        key, self.suppressed = raw.suppression_of(conn)
        self.hash = hasher(key) if key is not None and self.suppressed else None
        self.db = raw.LeadInserts(conn, now, normaliser.source)
        # PostgreSQL: a chunk's new leads go in together (COPY), then the refused ones
        self.batch: Callable[[list[tuple[Any, ...]]], list[int | None] | None] | None = getattr(
            self.db, "insert_many", None
        )
        self.uncommitted = 0
        self.in_transaction = False

    def _begin(self) -> None:
        if not self.in_transaction:
            self.db.begin()
            self.in_transaction = True

    def _end(self, commit: bool) -> None:
        if self.in_transaction:
            self.in_transaction = False
            self.uncommitted = 0
            if commit:
                self.db.commit()
            else:
                self.db.rollback()

    def _conflict(self, p: Parsed) -> Parsed | None:
        """`claim` for a row the unique indexes refused: None for a duplicate, else the row
        without its phone (the email is new, so the phone was the taken value)."""
        emails: set[str] = set()
        if p.email is not None and p.phone is not None:
            if self.db.email_taken(p.email):
                emails.add(p.email)
        else:  # a lone email or a lone phone can only conflict with itself
            return None
        return claim(p, emails, {p.phone})

    def _suppressed(self, p: Parsed) -> bool:
        """Whether the row's email or phone is on the suppression list (any channel)."""
        assert self.hash is not None
        return any(a is not None and self.hash(a) in self.suppressed for a in (p.email, p.phone))

    def _reject(self, chunk: Chunk, p: Parsed, reason: str) -> None:
        if self.rejects is None:
            return
        raw = p.raw
        if raw is None:  # a note added here, not by the worker: read the line again
            raw = next(r for line, r in self.normaliser.records(chunk) if line == p.line)
        self.rejects.write(raw, p.line, reason)

    def write(self, chunk: Chunk, parsed: Sequence[tuple[Any, ...]]) -> None:
        """Insert a chunk's new leads; commits every `COMMIT_ROWS` rows (never in a dry run).

        Rows go in one by one, in file order, with `ON CONFLICT DO NOTHING`: the unique email
        and phone indexes find duplicates while inserting, so no lookup precedes the insert
        (a lookup per chunk cost about a third of this process's CPU on 1M rows). Only a
        refused row is looked at again (`_conflict`), to apply `claim`'s rules. On PostgreSQL
        the chunk's new rows go in first, together (`_insert_batch`), then every row is
        reported in file order as above.
        """
        report = self.report
        self._begin()
        insert = self.db.insert
        find = self.db.find if self.update else None
        inserted = 0
        new: list[tuple[int | None, int]] = []  # (lead id, line): their `lead.imported` rows
        try:
            made: dict[int, int | None] | None = None  # `batch`: row index -> new lead id
            lookup: Callable[[int, Parsed], Any] | None = None  # `--update`: the stored lead
            if self.batch is not None:
                made, found = self._insert_batch(parsed, find)
                lookup = (lambda i, _row: found.get(i)) if find is not None else None
            if lookup is None and find is not None:
                lookup = lambda _i, row: find(row.email, row.phone)  # noqa: E731
            dropped = 0
            for i, t in enumerate(parsed):
                # Rows come as plain tuples from the workers (Parsed's fields, by index):
                # a Parsed is made only for the rare rows that need more than an insert.
                if t[_REJECT] is not None:
                    row, why = Parsed._make(t), t[_REJECT]
                    report.rejected += 1
                    report.note(Note(row.line, why, rejected=True))
                    self._reject(chunk, row, why)
                    continue
                if lookup is not None:
                    row = Parsed._make(t)
                    if (stored := lookup(i, row)) is not None:
                        if self._seen(stored[0]):  # earlier in the file: the first row wins
                            report.duplicates += 1
                        else:
                            self._update(chunk, row, stored)
                        continue
                p = t
                if made is not None:
                    lead_id = made[i]
                else:
                    cur = insert(t[1:8])  # email ... attrs
                    lead_id = cur.lastrowid if cur.rowcount else None
                if lead_id is None:
                    again = self._conflict(Parsed._make(t))
                    if again is None:
                        report.duplicates += 1
                        continue
                    p = again
                    lead_id = insert(p[1:8]).lastrowid
                new.append((lead_id, p[0]))
                if self.update:
                    self._seen(lead_id)
                inserted += 1
                dropped += p[_DROPPED]
                if self.hash is not None and self._suppressed(Parsed._make(p)):
                    report.suppressed += 1
                    report.note(Note(p[0], SUPPRESSED_NOTE))
                if p[_NOTES]:
                    reason = "; ".join(p[_NOTES])
                    report.note(Note(p[0], reason))
                    self._reject(chunk, Parsed._make(p), "imported; " + reason)
            report.fields_dropped += dropped
            self.db.imported(new)
            self.db.flush()
        except BaseException:
            self.abort()
            raise
        report.read += len(parsed)
        report.inserted += inserted
        self.uncommitted += len(parsed)
        if self.uncommitted >= COMMIT_ROWS and not self.dry_run:
            self._end(commit=True)

    def _insert_batch(
        self, parsed: Sequence[tuple[Any, ...]], find: Callable[..., Any] | None
    ) -> tuple[dict[int, int | None] | None, dict[int, Any]]:
        """PostgreSQL's path: a chunk's new leads inserted together (COPY, then one INSERT in
        file order), before the rows are reported in order. Returns the new lead id of each
        inserted row's index (None: a unique index refused it, `_conflict` decides; None for
        all: the batch would differ from one-by-one inserts and inserted nothing) and, with
        `--update`, the stored lead each other row names."""
        assert self.batch is not None
        found: dict[int, Any] = {}
        new: list[int] = []
        for i, row in enumerate(parsed):
            if row[_REJECT] is not None:
                continue
            if find is not None and (stored := find(row[_EMAIL], row[_PHONE])) is not None:
                found[i] = stored
                continue
            new.append(i)
        ids = self.batch([parsed[i][1:8] for i in new])
        return (None if ids is None else dict(zip(new, ids, strict=True))), found

    def _update(self, chunk: Chunk, row: Parsed, stored: tuple[Any, ...]) -> None:
        """`--update`: apply a row to the lead it names (`changes.update_from_row`)."""
        report = self.report
        change, clash = update_from_row(
            stored, row, replace=self.replace_tags, phone_free=self._phone_free
        )
        notes = (*row.notes, clash) if clash else row.notes
        report.fields_dropped += row.dropped + (clash is not None)
        if notes:
            reason = "; ".join(notes)
            report.note(Note(row.line, reason))
            self._reject(chunk, row, ("unchanged; " if change is None else "updated; ") + reason)
        if change is None:
            report.unchanged += 1
            return
        lead_id = stored[0]
        self.db.updated(lead_id, change.values, change.fields, row.line)
        for tag in change.added:
            self.db.tagged(lead_id, "added", tag, row.line)
        for tag in change.removed:
            self.db.tagged(lead_id, "removed", tag, row.line)
        report.updated += 1
        what = [*change.fields, *(f"+{t}" for t in change.added)]
        what += [f"-{t}" for t in change.removed]
        report.change(Note(row.line, "updated: " + ", ".join(what)))

    def _seen(self, lead_id: int | None) -> bool:
        """Whether an earlier row of the file named this lead; marks it named.

        A bit per lead id: a million leads cost 125 KiB, where a set of ids would cost 60 MiB.
        """
        assert lead_id is not None
        i, bit = lead_id >> 3, 1 << (lead_id & 7)
        if i >= len(self.named):
            self.named.extend(bytes(i + 4096 - len(self.named)))
        if self.named[i] & bit:
            return True
        self.named[i] |= bit
        return False

    def _phone_free(self, phone: str) -> bool:
        return not self.db.phone_taken(phone)

    def finish(self) -> None:
        """Commit what is left (a dry run rolls everything back)."""
        self._end(commit=not self.dry_run)

    def abort(self) -> None:
        """Roll back the open transaction; earlier commits stay (importing again completes)."""
        self._end(commit=False)


class _Rejects:
    """The `--rejects` CSV: the original columns, then `line` and `reason`."""

    def __init__(self, path: Path, header: Sequence[str], delimiter: str) -> None:
        try:
            # Held open for the whole import, closed by `close()`.
            self.fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise LeadsInputError(f"--rejects {path}: cannot write: {exc.strerror}") from None
        self.width = len(header)
        self.csv = csv.writer(self.fh, delimiter=delimiter)
        self.csv.writerow([*header, "line", "reason"])

    def write(self, raw: list[str], line: int, reason: str) -> None:
        cells = raw[: self.width] + [""] * (self.width - len(raw))
        self.csv.writerow([*cells, line, reason])

    def close(self) -> None:
        self.fh.close()


@dataclass(frozen=True)
class _Source:
    """A checked CSV file, where its records start, and the normaliser for its columns.

    Holds no open file, so it can be sent to the import process; `chunks()` opens the file.
    """

    fmt: CsvFormat
    first_line: int  # of the first record after the header
    normaliser: Normaliser

    def chunks(self) -> Generator[Chunk, None, None]:
        with self.fmt.open() as fh:
            # Skip the header as it was read: the file's lines, as `read_chunks` counts them.
            for _ in range(self.first_line - 1):
                fh.readline()
            yield from read_chunks(fh, self.first_line)


def _open_source(
    path: Path,
    mapping: Sequence[str],
    default_region: str | None,
    tags: Sequence[str] = (),
    encoding: str | None = None,
) -> _Source:
    """Check the file and map its columns; raises LeadsInputError before anything is written."""
    fmt = inspect_csv(path, encoding)
    overrides = parse_mapping(mapping)
    with fmt.open() as fh:
        reader = csv.reader(fh, delimiter=fmt.delimiter)
        try:
            header = next((row for row in reader if any(row)), None)
        except csv.Error as exc:
            raise LeadsInputError(f"{path}:{reader.line_num}: unreadable CSV: {exc}") from None
    if header is None:
        raise LeadsInputError(
            f"{path}: the file is empty", "export the leads with a header row first"
        )
    columns = map_columns([h.strip() for h in header], overrides, path)
    extra = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
    normaliser = Normaliser(
        columns, default_region, extra, source=str(path), delimiter=fmt.delimiter
    )
    return _Source(fmt, reader.line_num + 1, normaliser)


def import_leads(
    path: Path,
    cfg: Config,
    open_store: Callable[[], Store],
    *,
    mapping: Sequence[str] = (),
    tags: Sequence[str] = (),
    rejects: Path | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    encoding: str | None = None,
    update: bool = False,
    tags_mode: str = "merge",
) -> ImportReport:
    """Import a CSV file of leads; returns what was read, inserted, dropped and rejected.

    With `update`, a row naming a lead already stored (by its email, else its phone) updates
    it (see `changes.update_from_row`; `tags_mode` is merge or replace) instead of counting as
    a duplicate; a row naming a lead an earlier row of the file named is still a duplicate
    (the first row wins, so importing the same file again changes nothing).

    The file is checked (and the columns mapped) before the database is opened, so bad input
    touches nothing. `workers` defaults to one process per CPU for files big enough to gain;
    with workers, the import itself runs in a separate lean process (see `_ImportJob`).
    `progress(bytes_done, bytes_total)` is called after each chunk. `encoding` is the file's
    (`--encoding`); None finds it (see `inspect_csv`). The import process reads the file with
    the encoding decided here: it travels in the job's `CsvFormat`.
    """
    if tags_mode not in TAGS_MODES:
        raise LeadsInputError(
            f"--tags {tags_mode!r}: expected one of {', '.join(TAGS_MODES)}",
            "--tags merge adds the row's tags; --tags replace sets them",
        )
    src = _open_source(path, mapping, cfg.settings.default_region, tags, encoding)
    columns = src.normaliser.columns
    report = ImportReport(path, dry_run=dry_run, rejects_path=rejects, update=update)
    report.warnings.extend([src.fmt.warning] if src.fmt.warning else [])
    report.columns = {f: columns.header[i] for f, i in columns.fields.items()}
    report.attributes = [name for _, name in columns.attrs]
    if workers is None:
        workers = _workers_for(src.fmt.size)
    # The Store creates and migrates the database; the import writes through plain sqlite3.
    if dry_run:
        from campaignctl.store import Store

        # the real one counts duplicates, migrated first; none creates no file
        store = Store.for_reading(cfg, lazy=False)
        database = _database_of(store)
        store.close()
    else:
        database = _database_of(open_store())
    job = _ImportJob(
        src,
        report,
        database,
        rejects,
        dry_run,
        now or datetime.now(UTC),
        workers,
        update,
        tags_mode == "replace",
    )
    return job.run_elsewhere(progress) if workers > 0 else job.run(progress)


@dataclass(frozen=True)
class _Database:
    """Where an import writes: a SQLite file, `:memory:` built from `schema` (a dry run
    without a database file, so that it creates nothing), or a PostgreSQL `url`."""

    path: str
    schema: tuple[str, ...] = ()
    url: str = ""

    def raw(self) -> Any:
        """The store module with the import's raw fast path for this database."""
        if self.url:
            from campaignctl.store import postgres

            return postgres
        from campaignctl.store import sqlite

        return sqlite

    def connect(self) -> Any:
        if self.url:
            return self.raw().connect_raw(self.url)
        # The Store's settings; BEGIN is issued by `_Writer`.
        return self.raw().connect_raw(self.path, self.schema)


@contextmanager
def _database_errors_mapped(database: _Database) -> Iterator[None]:
    """A read-only, full or locked database (or an unreachable server) as one line naming it."""
    with database.raw().errors_mapped(database.url or database.path):
        yield


def _database_of(store: Store) -> _Database:
    path = store.path
    if path is not None:
        return _Database(str(path))
    if not store.in_memory:
        if store.dialect.name == "postgresql":
            return _Database(store.where, url=store.url)
        raise LeadsInputError(f"{store.where}: leads import writes only to SQLite or PostgreSQL")
    # An in-memory store lives only in its own connection: copy the lead table's schema.
    from campaignctl.store.sqlite import lead_schema

    return _Database(":memory:", lead_schema(store.engine))


@dataclass
class _ImportJob:
    """Everything an import needs, picklable: run here, or in a process of its own.

    With workers, the CLI process would otherwise carry both its own imports (Typer, Rich,
    pydantic, SQLAlchemy: about 57 MiB before reading a byte) and the import's working set
    (SQLite's cache, chunks in flight). The import process starts from the forkserver, which
    has loaded only the leads package, so neither process carries both.
    """

    src: _Source
    report: ImportReport
    database: _Database
    rejects: Path | None
    dry_run: bool
    now: datetime
    workers: int
    update: bool = False
    replace_tags: bool = False

    def run(self, progress: Callable[[int, int], None] | None = None) -> ImportReport:
        """Read, normalise, deduplicate and insert; returns the filled report."""
        src, report = self.src, self.report
        columns = src.normaliser.columns
        sink = _Rejects(self.rejects, columns.header, src.fmt.delimiter) if self.rejects else None
        try:
            with (
                _database_errors_mapped(self.database),
                closing(self.database.connect()) as conn,
            ):
                writer = _Writer(
                    conn,
                    src.normaliser,
                    report,
                    sink,
                    now=self.now,
                    dry_run=self.dry_run,
                    update=self.update,
                    replace_tags=self.replace_tags,
                    raw=self.database.raw(),
                )
                try:
                    with closing(_normalised(src.normaliser, src.chunks(), self.workers)) as done:
                        for chunk, parsed in done:
                            writer.write(chunk, parsed)
                            if progress is not None:
                                progress(chunk[2], src.fmt.size)
                except BaseException:
                    writer.abort()
                    raise
                writer.finish()
        finally:
            if sink is not None:
                sink.close()
        return report

    def run_elsewhere(self, progress: Callable[[int, int], None] | None = None) -> ImportReport:
        """`run()` in a process of its own; progress, the report and errors come back here."""
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["campaignctl.leads.importer"])
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_import_process, args=(self, send), name="campaignctl-import")
        proc.start()
        send.close()  # so that recv() sees EOF if the import process dies
        outcome = None
        try:
            outcome = _outcome(receive, progress)
            # Its last word is sent: the import process exits by itself, unasked.
            proc.join(timeout=JOIN_SECONDS)
        except BaseException:
            # Interrupted here (Ctrl-C): SIGTERM makes the import process roll back its open
            # transaction and shut its workers down (`_import_process`).
            proc.terminate()
            proc.join(timeout=JOIN_SECONDS)
            raise
        finally:
            if proc.is_alive():  # stuck after its last word, or deaf to SIGTERM
                proc.kill()
            proc.join()
            receive.close()
            if proc.exitcode == 0:
                # It ended by itself, its workers stopped: nothing else uses the forkserver
                # and the resource tracker, so they stop at once. (After a crash, orphaned
                # workers may still hold them: then they are left to stop by themselves.)
                _stop_helper_processes()
        if outcome is None:
            raise CampaignctlError(
                f"{self.src.fmt.path}: the import process stopped "
                f"(exit code {proc.exitcode}); whole transactions are kept",
                "import the file again to complete it (duplicates are not inserted twice)",
            )
        kind, *payload = outcome
        if kind == "done":
            report: ImportReport = payload[0]
            return report
        # "error": rebuilt here, with its hint (exceptions pickle without it)
        error_type, message, hint = payload
        if isinstance(error_type, type) and issubclass(error_type, CampaignctlError):
            raise error_type(message, hint)
        raise RuntimeError(f"import process: {message}")


#: How long the CLI process waits for the import process to exit by itself.
JOIN_SECONDS = 60


def _outcome(receive: Any, progress: Callable[[int, int], None] | None) -> tuple[Any, ...] | None:
    """Pass progress messages on; the import process's last word ("done" or "error" and its
    payload), or None when it died without one."""
    while True:
        try:
            message: tuple[Any, ...] = receive.recv()
        except EOFError:
            return None
        if message[0] != "progress":
            return message
        if progress is not None:
            progress(*message[1:])


def _stop_helper_processes() -> None:
    """Stop the forkserver and resource tracker this process started, and wait for them.

    Left alone, each exits when it reads EOF from the process that started it, that is after
    that process has exited: they would outlive the command, orphaned, for a moment or (under
    load) much longer. A process that inherited them (`_pid` None) leaves them to their
    starter. `_stop()` is multiprocessing's own (its tests use it); it reopens them on demand.
    """
    from multiprocessing import forkserver, resource_tracker

    server: Any = forkserver._forkserver
    if getattr(server, "_forkserver_pid", None) is not None:
        server._stop()
    tracker: Any = resource_tracker._resource_tracker
    if getattr(tracker, "_pid", None) is not None:
        tracker._stop()


def _import_process(job: _ImportJob, send: Any) -> None:
    """The body of the import process: run the job, send back progress and the outcome."""
    import signal

    # Ctrl-C reaches the whole process group. This process leaves it to the CLI process,
    # which answers it with SIGTERM; raised here as KeyboardInterrupt, that rolls back and
    # shuts the pool down, so no worker is left behind. Workers inherit the ignored SIGINT
    # and are stopped by that shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        report = job.run(lambda done, total: send.send(("progress", done, total)))
    except CampaignctlError as exc:
        outcome: tuple[Any, ...] = ("error", type(exc), exc.message, exc.hint)
    except KeyboardInterrupt:  # SIGTERM from the CLI process, which no longer listens
        outcome = ("error", None, "interrupted", None)
    except BaseException as exc:  # a bug: sent back as text, with its type
        import traceback

        outcome = ("error", None, "".join(traceback.format_exception(exc)).strip(), None)
    else:
        outcome = ("done", report)
    # The work is over (rolled back or committed, workers stopped): from here a SIGTERM just
    # ends the process, never with a KeyboardInterrupt raised in the middle of its exit.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        _stop_helper_processes()  # the workers' forkserver, started here
        send.send(outcome)
    finally:
        send.close()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _workers_for(size: int) -> int:
    """Worker processes for a file: `CAMPAIGNCTL_IMPORT_WORKERS`, else one per CPU (at most 4)
    when the file is big enough to repay their start, else none."""
    import os

    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        if not env.isdigit():
            raise LeadsInputError(f"{WORKERS_ENV}={env!r}: expected a number of processes")
        return int(env)
    return min(os.cpu_count() or 1, 4) if size >= PARALLEL_BYTES else 0


def sample_leads_from_csv(
    path: Path, cfg: Config, limit: int | None = None
) -> list[dict[str, Any]]:
    """Lead contexts (as templates see them) for the valid, distinct rows of a CSV file.

    Reads the file as `leads import` would, without any database; `check --leads` uses it.
    """
    from campaignctl.audience import lead_context

    src = _open_source(path, (), cfg.settings.default_region)
    emails: set[str] = set()
    phones: set[str] = set()
    out: list[dict[str, Any]] = []
    with closing(src.chunks()) as chunks:
        for chunk in chunks:
            for line, raw in src.normaliser.records(chunk):
                if limit is not None and len(out) >= limit:
                    return out
                parsed = src.normaliser.row(line, raw)
                p = claim(parsed, emails, phones) if parsed.reject is None else None
                if p is not None:
                    out.append(
                        lead_context(
                            email=p.email,
                            phone=p.phone,
                            first_name=p.first_name,
                            last_name=p.last_name,
                            timezone=p.timezone,
                            status="new",
                            tags=json.loads(p.tags),
                            attrs=json.loads(p.attrs),
                        )
                    )
    return out


def read_addresses(
    path: Path,
    default_region: str | None,
    encoding: str | None = None,
    mapping: Sequence[str] = (),
) -> Iterator[Parsed]:
    """Each non-blank record of a CSV file, normalised as `leads import` reads it (its email
    and phone columns found the same way; `reject` says why a row has no valid address), in
    file order. `suppress import` reads its files with it; no database is involved."""
    src = _open_source(path, mapping, default_region, encoding=encoding)
    with closing(src.chunks()) as chunks:
        for chunk in chunks:
            for line, raw in src.normaliser.records(chunk):
                yield src.normaliser.row(line, raw)
