"""The database's errors about its file, its disk or its lock, as campaignctl errors.

Each dialect maps its driver's errors to these (`Dialect.map_error`; SQLite's in
`store.sqlite.database_error`). This module imports no database library.
"""

from __future__ import annotations

from campaignctl.errors import CampaignctlError, ExitCode


class DatabaseError(CampaignctlError):
    """The database file cannot be used: read-only, disk full, unreadable, not a database."""


class DatabaseBusyError(DatabaseError):
    """Another process kept the database locked past the busy timeout: try again later."""

    exit_code = ExitCode.TEMPFAIL
