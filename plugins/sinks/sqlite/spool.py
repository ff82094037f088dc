"""The sqlite sink's spool: signals that could not be stored yet, one JSON signal per line."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from v7 import PRIVATE_MODE, Signal, create_private

from .schema import is_retryable

try:  # POSIX advisory locks keep two processes that share a spool from losing each other's lines
    import fcntl
except ImportError:  # pragma: no cover - Windows: a single writer per database is assumed
    fcntl = None  # type: ignore[assignment]


def spool_path_for(database: Path) -> Path:
    """Where the sink spools for the database at `database`: `<db path>.spool.jsonl`, beside it."""
    return database.resolve().with_name(database.name + ".spool.jsonl")


def fallback_spool_path(folder: Path, database: Path) -> Path:
    """The second spool, in `[sinks.sqlite] spool_dir`: named after the database and a hash of its
    absolute path, so databases sharing the folder never mix their signals."""
    resolved = str(database.resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:12]
    return Path(folder).resolve() / f"{database.name}-{digest}.spool.jsonl"


class Spool:
    """Signals that could not be stored yet: one JSON signal per line, appended and fsync'ed.

    Appenders and the replaying sink take an exclusive flock on the file; the replay replaces or
    removes the file, so an appender that waited re-opens the path when its inode has changed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.name.removesuffix(".jsonl") + ".rejected.jsonl")

    def __len__(self) -> int:
        try:
            with self.path.open("rb") as handle:
                return sum(1 for line in handle if line.strip())
        except (FileNotFoundError, IsADirectoryError):
            return 0

    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def _locked(self) -> Iterator[int]:
        """A descriptor of the current spool file, exclusively locked until the block ends."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE_MODE)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = False
                if current:
                    yield fd
                    return
            finally:
                os.close(fd)  # also releases the lock

    def append(self, signal: Signal) -> None:
        line = (signal.model_dump_json() + "\n").encode()
        created = not self.path.exists()
        with self._locked() as fd:
            _write_all(fd, line)
            os.fsync(fd)
        if created:
            _fsync_dir(self.path.parent)

    def replay(
        self,
        store: Callable[[Signal], bool],
        reject: Callable[[bytes, BaseException], None],
        unreadable: Callable[[int, bytes, ValueError, bool], None] | None = None,
    ) -> tuple[int, int]:
        """Hand each spooled signal, oldest first, to `store(signal) -> bool`. Returns (stored, already stored).

        A retryable storage error stops the replay, keeps the rest in the spool and is re-raised.
        A signal the database refuses for good (`reject`) is moved aside, so it cannot block the
        others. A line that is not a valid `Signal` (written by another V7 version, edited by hand,
        damaged) is appended to the rejected file (fsync'ed) before anything is stored, then reported
        as `unreadable(line number, line, error, torn=False)`. Only an unreadable *last* line with no
        newline after it, an append torn by a crash before the failure was reported, is dropped:
        `unreadable(..., torn=True)`. If the rejected file cannot be written the error is raised and
        the spool is left as it was.
        """
        stored = duplicates = 0
        with self._locked() as fd:
            segments = _read_all(fd).split(b"\n")  # the last segment is empty when the file ends with a newline
            readable: list[tuple[bytes, Signal]] = []
            set_aside: list[tuple[int, bytes, ValueError]] = []
            torn: tuple[int, bytes, ValueError] | None = None
            for number, line in enumerate(segments, 1):
                if not line.strip():
                    continue
                try:
                    readable.append((line, Signal.model_validate_json(line)))
                except ValueError as exc:  # pydantic's ValidationError, also for JSON that does not parse
                    if number == len(segments):
                        torn = (number, line, exc)
                    else:
                        set_aside.append((number, line, exc))
            if set_aside:
                self.reject(*(line for _, line, _ in set_aside))
            if unreadable is not None:
                for number, line, exc in set_aside:
                    unreadable(number, line, exc, False)
                if torn is not None:
                    unreadable(*torn, True)
            remaining: list[bytes] = []
            error: BaseException | None = None
            for index, (line, signal) in enumerate(readable):
                try:
                    if store(signal):
                        stored += 1
                    else:
                        duplicates += 1
                except (sqlite3.Error, OSError) as exc:
                    if not is_retryable(exc):
                        reject(line, exc)
                        continue
                    error, remaining = exc, [line for line, _ in readable[index:]]
                    break
            if not remaining:
                os.unlink(self.path)
                _fsync_dir(self.path.parent)
            elif set_aside or torn is not None or len(remaining) < len(readable):
                self._replace(b"".join(line + b"\n" for line in remaining))
            if error is not None:
                raise error
        return stored, duplicates

    def _replace(self, data: bytes) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        _fsync_dir(self.path.parent)

    def reject(self, *lines: bytes) -> None:
        """Append lines to the rejected file, kept for a person to look at; fsync'ed before returning."""
        created = not self.rejected_path.exists()
        create_private(self.rejected_path)
        with self.rejected_path.open("ab") as handle:
            handle.write(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            _fsync_dir(self.rejected_path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _fsync_dir(folder: Path) -> None:
    """Make a created, renamed or removed file name durable too."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
