"""JSON Lines sink: one JSON object per signal (its theory results included), flushed per line.

`path = "-"` writes to standard output (logs go to stderr, so stdout carries only signals), for
piping into `jq` or another process. A file is appended to; signals already in it (same symbol,
granularity, bar_time and config_hash, the sqlite sink's unique key) are not written twice.

`JsonlSink.reader()` (and `reader_at(path)`: `v7 stats --sink jsonl --db signals.jsonl`) reads the
file back for `v7 stats` and `v7 export`: each whole line is a stored signal, its line number its
`id`; a line that is not a valid signal is skipped. The file keeps no runs, spool or backtests.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from pydantic import Field

from v7 import PRIVATE_MODE, NotSupported, PluginConfig, RunInfo, Signal, SignalQuery, SignalReader, Sink, StoredSignal, format_utc, hookimpl, parse_utc


class JsonlSinkError(RuntimeError):
    """The jsonl sink could not write; the message names the file and the cause."""


class JsonlConfig(PluginConfig):
    path: str = Field(default="signals.jsonl", description='File to append to, relative to the working directory; "-" = stdout')
    include_prompt: bool = Field(default=False, description="Keep the LLM prompt in each line")
    fsync: bool = Field(default=False, description="fsync after each line (durable against power loss, slower)")


def signal_key(data: dict[str, Any]) -> tuple[str, str, str, str]:
    """The unique key of a signal as serialized: bar_time normalized to UTC seconds."""
    bar_time = format_utc(parse_utc(str(data["bar_time"])))
    return (str(data["symbol"]), str(data["granularity"]), bar_time, str(data.get("config_hash") or ""))


class JsonlSink(Sink):
    name = "jsonl"
    version = "1.0"
    Config = JsonlConfig

    def __init__(self, config: JsonlConfig | None = None) -> None:
        super().__init__(config)
        self._fd: int | None = None
        self._seen: set[tuple[str, str, str, str]] = set()
        self._size = 0  # bytes known to end with a whole line

    @property
    def to_stdout(self) -> bool:
        return self.config.path == "-"

    @property
    def where(self) -> str:
        return "stdout" if self.to_stdout else str(Path(self.config.path).resolve())

    def open(self, run: RunInfo, log) -> None:
        if self.to_stdout:
            log.info("jsonl sink open", path="-")
            return
        path = Path(self.config.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_MODE)
            self._size, torn = self._load_keys(path)
        except OSError as exc:
            raise JsonlSinkError(f"jsonl sink: cannot open {self.where}: {exc.strerror or exc}") from exc
        if torn:
            log.warning("jsonl sink dropped a torn last line (a crash while writing it)", path=self.where, bytes=torn)
        log.info("jsonl sink open", path=self.where, signals_in_file=len(self._seen))

    def _load_keys(self, path: Path) -> tuple[int, int]:
        """Remember the signals already in the file; cut a torn last line. Returns (size, bytes cut)."""
        if not path.is_file():
            return 0, 0
        data = path.read_bytes()
        whole = data.rfind(b"\n") + 1
        for line in data[:whole].splitlines():
            try:
                self._seen.add(signal_key(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        if whole < len(data):
            os.truncate(path, whole)
        return whole, len(data) - whole

    def write(self, signal: Signal) -> bool:
        exclude = None if self.config.include_prompt else {"prompt"}
        line = signal.model_dump_json(exclude=exclude) + "\n"
        if self.to_stdout:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except OSError as exc:
                raise JsonlSinkError(f"jsonl sink: cannot write to stdout: {exc.strerror or exc}") from exc
            return True
        if self._fd is None:
            raise RuntimeError("jsonl sink used before open()")
        key = signal_key({"symbol": signal.symbol, "granularity": signal.granularity, "bar_time": signal.bar_time.isoformat(), "config_hash": signal.config_hash})
        if key in self._seen:
            return False
        data = line.encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.config.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            self._cut_partial_line()
            raise JsonlSinkError(f"jsonl sink: cannot write {self.where}: {exc.strerror or exc}") from exc
        self._size += len(data)
        self._seen.add(key)
        return True

    def _cut_partial_line(self) -> None:
        """After a failed write, drop what part of the line reached the file, so the next line starts clean."""
        try:
            if self._fd is not None and os.fstat(self._fd).st_size > self._size:
                os.ftruncate(self._fd, self._size)
        except OSError:  # a device such as /dev/full, or the disk still full: nothing to cut or nothing possible
            pass

    def reader(self) -> JsonlReader:
        """A reader of this sink's file; a sink writing to stdout keeps nothing to read."""
        if self.to_stdout:
            raise NotSupported("sink 'jsonl' writes to stdout (path = \"-\"): there is no file to read back")
        return JsonlReader(self.config.path)

    @classmethod
    def reader_at(cls, location: str) -> JsonlReader:
        if location == "-":
            raise NotSupported("sink 'jsonl' cannot read signals back from stdout")
        return JsonlReader(location)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class JsonlReader(SignalReader):
    """The signals of one jsonl sink file, read line by line (the file may grow while it is read)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path.resolve())

    def signals(self, query: SignalQuery | None = None, *, with_prompt: bool = False) -> Iterator[StoredSignal]:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            raise JsonlSinkError(f"no signals file at {self.location}: run `v7 run` first or check [sinks.jsonl] path") from None
        except OSError as exc:
            raise JsonlSinkError(f"jsonl sink: cannot read {self.location}: {exc.strerror or exc}") from exc
        return self._iterate(handle, query, with_prompt)  # a missing file is an error at the call

    def _iterate(self, handle: Any, query: SignalQuery | None, with_prompt: bool) -> Iterator[StoredSignal]:
        with handle:
            for number, line in enumerate(handle, 1):
                if not line.endswith(b"\n") or not line.strip():  # a line still being written, or blank
                    continue
                try:
                    signal = Signal.model_validate_json(line)
                except ValueError:  # written by another V7 version or edited: not a signal this V7 reads
                    continue
                if query is not None and not query.matches(signal):
                    continue
                data = signal.model_dump(exclude=None if with_prompt else {"prompt"})
                yield StoredSignal.model_validate({**data, "id": number})


@hookimpl
def register_sinks(register):
    register(JsonlSink)
