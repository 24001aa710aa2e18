"""Why a store operation failed, in words a user can act on. Pure functions over the exception.

A read-only folder, a full disk, a lock held by another program and a damaged file each need a
different fix; telling them apart keeps "may be damaged" for files that really are.
"""

import errno
import sqlite3
from pathlib import Path

READ_ONLY, FULL, LOCKED, DAMAGED, CANT_OPEN = "read-only", "full", "locked", "damaged", "cannot open"

# SQLite's primary result codes (Python 3.11+ exposes them as `sqlite_errorname`) and, for drivers
# that do not, the fixed texts sqlite3_errstr() gives for them.
_SQLITE_NAMES = {
    "SQLITE_READONLY": READ_ONLY, "SQLITE_PERM": READ_ONLY, "SQLITE_AUTH": READ_ONLY,
    "SQLITE_FULL": FULL, "SQLITE_BUSY": LOCKED, "SQLITE_LOCKED": LOCKED,
    "SQLITE_CORRUPT": DAMAGED, "SQLITE_NOTADB": DAMAGED, "SQLITE_CANTOPEN": CANT_OPEN,
}
_TEXTS = (
    ("attempt to write a readonly database", READ_ONLY), ("read-only", READ_ONLY),
    ("readonly", READ_ONLY), ("permission denied", READ_ONLY), ("access permission denied", READ_ONLY),
    ("database or disk is full", FULL), ("no space left on device", FULL), ("disk quota exceeded", FULL),
    ("database is locked", LOCKED), ("database table is locked", LOCKED),
    ("database disk image is malformed", DAMAGED), ("file is not a database", DAMAGED),
    ("unable to open database file", CANT_OPEN),
)
_ERRNOS = {errno.EROFS: READ_ONLY, errno.EACCES: READ_ONLY, errno.EPERM: READ_ONLY,
           errno.ENOSPC: FULL, errno.EDQUOT: FULL}


def classify(exc: BaseException) -> str | None:
    """READ_ONLY, FULL, LOCKED, DAMAGED, CANT_OPEN, or None when the cause is something else.
    Looks through SQLAlchemy's wrapper (`.orig`) and the `__cause__` chain."""
    seen = 0
    while exc is not None and seen < 5:
        seen += 1
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            return _ERRNOS[exc.errno]
        name = getattr(exc, "sqlite_errorname", None)
        if isinstance(exc, sqlite3.Error) and name:
            base = name.split("_")[:2]  # SQLITE_READONLY_DBMOVED -> SQLITE_READONLY
            found = _SQLITE_NAMES.get("_".join(base))
            if found:
                return found
        text = str(exc).lower()
        for needle, kind in _TEXTS:
            if needle in text:
                return kind
        exc = getattr(exc, "orig", None) or exc.__cause__
    return None


def cant_open_reason(path: Path) -> str:
    """Why SQLite could not open (or create) `path`: read-only is the usual cause, so check it."""
    folder = path.parent
    if not folder.is_dir():
        return CANT_OPEN
    if _read_only_fs(folder) or not _writable(folder) or (path.exists() and not _writable(path)):
        return READ_ONLY
    return CANT_OPEN


def _writable(p: Path) -> bool:
    import os

    return os.access(p, os.W_OK)


def _read_only_fs(p: Path) -> bool:
    import os

    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def advice(kind: str | None, shown: str, path: Path | None, detail: str) -> str:
    """The message for a store at `shown` (URL or file, password hidden) that failed with `kind`."""
    where = f"{path}" if path is not None else shown
    if kind == READ_ONLY:
        if path is None:
            fix = "Grant this user write access to the database, or "
        elif path.exists():
            fix = f"Make the file and its folder writable (chmod u+w '{path}' '{path.parent}'), or "
        else:
            fix = f"Make its folder writable (chmod u+w '{path.parent}'), or "
        return (f"The results store {where} is read-only for Tradeoff Lab ({detail}); it needs to write "
                f"to it{' and to its folder (SQLite keeps its journal next to the file)' if path else ''}. "
                f"{fix}set TLAB_HOME (or TLAB_STORE_URL) to a store you can write to.")
    if kind == FULL:
        return (f"The disk holding the results store {where} is full ({detail}); the change was not "
                "saved and the store is intact. Free some space on that disk, or set TLAB_HOME (or "
                "TLAB_STORE_URL) to a store on another disk, then run the command again.")
    if kind == LOCKED:
        return (f"The results store {where} is locked by another program ({detail}). Wait for it to "
                "finish and run the command again.")
    if kind == DAMAGED:
        return damaged_advice(where, path, detail)
    return (f"The results store {where} could not be used ({detail}). Check that it is reachable, or set "
            "TLAB_HOME (or TLAB_STORE_URL) to another store.")


def damaged_advice(where: str, path: Path | None, detail: str) -> str:
    if path is None:
        return (f"The results store {where} is damaged ({detail}). Restore it from a backup, or set "
                "TLAB_STORE_URL to another database.")
    return (f"The results store file {path} is damaged ({detail}). Move it aside "
            f"(mv '{path}' '{path}.damaged'); Tradeoff Lab then starts a new, empty store there and "
            "recomputes results as sweeps ask for them. The sqlite3 shell's .recover command can salvage "
            "rows from the old file. Or set TLAB_HOME (or TLAB_STORE_URL) to use another store.")
