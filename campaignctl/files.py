"""Writing a file so that a reader never sees half of it: the campaign file's edits and
`report --out` share it."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(
    path: Path,
    text: str,
    *,
    like: os.stat_result | None = None,
    folder_error: Callable[[OSError], Exception] | None = None,
) -> None:
    """Replace `path` with `text` (UTF-8): a temp file in the same folder, fsync, rename, then
    fsync the folder, so a crash leaves the old file or the new one, never a mix.

    The new file gets `like`'s mode and owner (an edit keeps the file as it was), else the mode
    a plain open() would give it. A folder the temp file cannot be made in raises
    `folder_error(exc)` when given (the caller's own words), else the OSError."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if folder_error is None:
            raise
        raise folder_error(exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        if like is not None:
            os.chmod(tmp, stat.S_IMODE(like.st_mode))
            with contextlib.suppress(OSError):  # only root can give a file away; that is fine
                os.chown(tmp, like.st_uid, like.st_gid)
        else:
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)  # as a plain open() would have made it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)
