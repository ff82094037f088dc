"""Is the file the sink writes still the file at its path? Deleted or replaced databases, stale WALs.

SQLite keeps writing into a database file that was deleted (or renamed, or replaced) while open:
every commit "succeeds" into an inode nobody will see again. The sink holds its own descriptor of
the file it opened and compares, in every transaction, that inode with the one at the path.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from v7 import create_private

from .schema import SqliteSinkError


class DatabaseReplaced(OSError):
    """The database file at the configured path is no longer the file the sink writes (a storage failure)."""


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class DatabaseIdentity:
    """The device and inode of the database file the sink opened, held by a descriptor of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        status = os.fstat(self._fd)
        self.device, self.inode = status.st_dev, status.st_ino

    def problem(self) -> str | None:
        """Why the file at the path is not the one being written (deleted, moved, replaced), or None."""
        links = os.fstat(self._fd).st_nlink
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return "was deleted while open" if links == 0 else "was moved away while open"
        if (current.st_dev, current.st_ino) != (self.device, self.inode):
            return "was replaced by another file while open"
        if links == 0:  # pragma: no cover - the path names our inode, so it has a link
            return "was deleted while open"
        return None

    @property
    def deleted(self) -> bool:
        return os.fstat(self._fd).st_nlink == 0

    def salvage(self) -> Path:
        """Copy the deleted file (checkpointed by the caller) beside the path, owner-only; returns the copy."""
        target = self.path.with_name(f"{self.path.name}.deleted-{stamp()}.db")
        create_private(target)
        with open(target, "wb") as out:
            offset = 0
            while chunk := os.pread(self._fd, 1 << 20, offset):
                out.write(chunk)
                offset += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        return target

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def set_aside_stale_wal(path: Path) -> Path | None:
    """A `-wal` left beside a database that no longer exists belongs to the deleted file: SQLite would
    discard it when it creates the new database. Move it aside (never delete it); returns where."""
    if path.exists():
        return None
    wal = path.with_name(path.name + "-wal")
    shm = path.with_name(path.name + "-shm")
    moved = None
    if wal.exists():
        moved = wal.with_name(f"{wal.name}.stale-{stamp()}")
        try:
            os.replace(wal, moved)
        except OSError as exc:
            raise SqliteSinkError(f"a stale WAL {wal} is left from a deleted database and cannot be moved aside: {exc.strerror}") from exc
    if shm.exists():
        try:
            shm.unlink()  # only an index of the WAL, rebuilt by SQLite
        except OSError:
            pass
    return moved


def probe_writable(spool: Path) -> str | None:
    """None when a spool file can be appended at `spool`; else why not.

    An existing spool must open for appending; otherwise a probe file of this process's own
    (never the spool's name: another run may be creating or removing it right now) must be
    creatable in its folder."""
    import threading

    try:
        spool.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(spool, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            pass
        else:
            os.close(fd)
            return None
        probe = spool.with_name(f".{spool.name}.probe-{os.getpid()}-{threading.get_ident()}")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        os.unlink(probe)
        return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
