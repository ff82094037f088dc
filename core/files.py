"""Files that hold prompts, reasoning and LLM answers are readable by their owner only."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600


def create_private(path: str | Path, mode: int = PRIVATE_MODE) -> Path:
    """Create `path` empty with `mode` (owner read/write) unless it exists; an existing file keeps its mode.

    Call it before a library (SQLite, pandas, csv) creates the file with the process's default mode.
    SQLite gives its -wal and -shm files the mode of the database file.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return path
    os.close(fd)
    return path
