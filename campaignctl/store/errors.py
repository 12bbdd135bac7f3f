"""SQLite's errors about the database file, its disk or its lock, as campaignctl errors.

Both the Store (through SQLAlchemy) and the import (through plain sqlite3, in a lean process
that must not load SQLAlchemy) meet them, so this module imports neither.
"""

from __future__ import annotations

from campaignctl.errors import CampaignctlError, ExitCode

# SQLite's primary result codes that say something about the file, the disk or another process
# (sqlite.org/rescode.html); SQLITE_ERROR (1) and constraint errors are ours and stay bugs.
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_NOTADB = 26
_ENVIRONMENT_HINTS = {
    _SQLITE_READONLY: "make the database file, its -wal and -shm files and its folder "
    "writable by this user",
    _SQLITE_PERM: "make the database file, its -wal and -shm files and its folder "
    "writable by this user",
    _SQLITE_FULL: "free some space on the database's disk, then run the command again "
    "(whole transactions are kept)",
    _SQLITE_IOERR: "check the database's disk (full? read-only? removed?), then run the "
    "command again (whole transactions are kept)",
    _SQLITE_CANTOPEN: "check that the database's folder exists and is writable by this user",
    _SQLITE_CORRUPT: "point settings.database at a campaignctl database, or restore a backup",
    _SQLITE_NOTADB: "point settings.database at a campaignctl database, or restore a backup",
    _SQLITE_BUSY: "another process held the database for 30 s; try again when it ends",
    _SQLITE_LOCKED: "another process held the database for 30 s; try again when it ends",
}


class DatabaseError(CampaignctlError):
    """The database file cannot be used: read-only, disk full, unreadable, not a database."""


class DatabaseBusyError(DatabaseError):
    """Another process kept the database locked past the busy timeout: try again later."""

    exit_code = ExitCode.TEMPFAIL


def database_error(database: object, exc: BaseException) -> DatabaseError | None:
    """Our error for a SQLite error about the file, disk or lock (SQLAlchemy's wrapper or the
    sqlite3 exception itself); None for any other error, which is left to propagate as a bug.

    Only SQLite's own one-line message is kept: never the SQL, its parameters or SQLAlchemy's
    "Background on this error" line.
    """
    orig = getattr(exc, "orig", exc)  # sqlalchemy.exc.DBAPIError wraps the sqlite3 error
    code = getattr(orig, "sqlite_errorcode", None)
    if not isinstance(code, int) or (code & 0xFF) not in _ENVIRONMENT_HINTS:
        return None
    primary = code & 0xFF
    reason = str(orig.args[0] if orig.args else orig).splitlines()[0]
    cls = DatabaseBusyError if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) else DatabaseError
    return cls(f"{database}: cannot use the database: {reason}", _ENVIRONMENT_HINTS[primary])
