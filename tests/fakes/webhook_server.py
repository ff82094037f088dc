"""A fake JSON webhook on 127.0.0.1 (real HTTP): what Apprise's `json://127.0.0.1:PORT/PATH` posts.

Every POST is kept with its decoded JSON body in `received` (on arrival, before any injected
fault, so a message answered 500 or left hanging is still seen). `channel(path)` is the Apprise URL
of a channel on this server (`url` stays the plain http one); tokens are path segments, as in real webhook URLs.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from ._http_server import FakeHTTPServer, Recorded, _Server


@dataclass
class Posted:
    at: float  # time.monotonic() on arrival
    path: str
    body: dict[str, Any]


class FakeWebhook(FakeHTTPServer):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Posted] = []

    def start(self) -> "FakeWebhook":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                with fake._cond:
                    fake.received.append(Posted(time.monotonic(), self.path.split("?", 1)[0], body))
                    fake._cond.notify_all()
                fake._dispatch(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="FakeWebhook")
        self._thread.start()
        return self

    def channel(self, path: str = "/hook") -> str:
        """The Apprise URL of a channel posting to `path` on this server."""
        return f"json://127.0.0.1:{self.port}{path}"

    def route(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        return 200, {"ok": True}, {}

    def bodies(self, prefix: str = "") -> list[dict[str, Any]]:
        with self._cond:
            return [p.body for p in self.received if p.path.startswith(prefix)]

    def wait_for(self, count: int, prefix: str = "", timeout: float = 10.0) -> list[dict[str, Any]]:
        """The bodies posted under `prefix` once there are `count` of them (fewer after `timeout`)."""
        with self._cond:
            self._cond.wait_for(lambda: len([p for p in self.received if p.path.startswith(prefix)]) >= count, timeout)
        return self.bodies(prefix)
