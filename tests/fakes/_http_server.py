"""A real HTTP server on 127.0.0.1 for fakes of external APIs: request log, latency and fault injection.

Subclasses implement `route()`; tests inject faults (`inject`, `fail_always`), add latency, and
read the request log (arrival times, paths, query, headers, statuses) to count and time requests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Recorded:
    """One request as the fake saw it."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    status: int | None = None
    fault: str | None = None


@dataclass
class Fault:
    """A canned misbehaviour. `passthrough` = delay only, then the normal answer."""

    name: str
    status: int = 500
    body: bytes | str | Callable[[Recorded], bytes | str] = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    passthrough: bool = False
    path_prefix: str | None = None

    def matches(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)


HTML_503 = (
    "<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n"
    "<body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>cloudflare</center></body></html>\n"
)


def rate_limited(retry_after: float | str | None = 1, body: str | None = None, html: bool = False, path_prefix: str | None = None) -> Fault:
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    if html:
        return Fault("429-html", 429, "<html><head><title>429 Too Many Requests</title></head><body>Too Many Requests</body></html>", "text/html", headers, path_prefix=path_prefix)
    return Fault("429", 429, body or json.dumps({"message": "Public rate limit exceeded"}), headers=headers, path_prefix=path_prefix)


def server_error(status: int = 500, body: str | None = None, path_prefix: str | None = None) -> Fault:
    return Fault(f"{status}", status, body or json.dumps({"message": "Internal server error"}), path_prefix=path_prefix)


def html_page(status: int = 503, path_prefix: str | None = None) -> Fault:
    return Fault(f"html-{status}", status, HTML_503, "text/html", path_prefix=path_prefix)


def malformed_json(status: int = 200, path_prefix: str | None = None) -> Fault:
    return Fault("malformed", status, '[[1712192400, 69000.1, 69500.2, 69100.0', path_prefix=path_prefix)


def non_json(status: int = 200, path_prefix: str | None = None) -> Fault:
    return Fault("non-json", status, "upstream connect error or disconnect/reset before headers", "text/plain", path_prefix=path_prefix)


def slow(seconds: float, path_prefix: str | None = None) -> Fault:
    return Fault("slow", delay=seconds, passthrough=True, path_prefix=path_prefix)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when 50 clients arrive at once


class FakeHTTPServer:
    """ThreadingHTTPServer on an ephemeral port, in a background thread."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.latency = 0.0
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests served at the same moment: > 1 proves concurrency
        self._schedule: list[Fault | None] = []
        self._sticky: Fault | None = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> "FakeHTTPServer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake._dispatch(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=type(self).__name__)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeHTTPServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- fault injection --------------------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1, after: int = 0) -> None:
        """Answer `times` matching requests with `fault`, after letting `after` requests through."""
        with self._cond:
            self._schedule.extend([None] * after + [fault] * times)

    def fail_always(self, fault: Fault) -> None:
        """Answer every request with `fault` until `recover()`."""
        with self._cond:
            self._sticky = fault

    def recover(self) -> None:
        with self._cond:
            self._sticky = None
            self._schedule.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._cond:
            if self._sticky is not None and self._sticky.matches(path):
                return self._sticky
            for index, fault in enumerate(self._schedule):
                if fault is None or fault.matches(path):
                    return self._schedule.pop(index)
            return None

    # -- request log ----------------------------------------------------------------------

    def requests_to(self, prefix: str = "") -> list[Recorded]:
        with self._cond:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def statuses(self, prefix: str = "") -> list[int | None]:
        return [r.status for r in self.requests_to(prefix)]

    def reset_log(self) -> None:
        with self._cond:
            self.requests.clear()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- serving --------------------------------------------------------------------------

    def route(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        """(status, body, headers) for a request; the body is JSON-encoded unless bytes/str."""
        return 404, {"message": "NotFound"}, {}

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        record = Recorded(
            at=time.monotonic(),
            method=handler.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in handler.headers.items()},
        )
        with self._cond:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
        try:
            self._respond(handler, record)
        finally:
            with self._cond:
                self.in_flight -= 1

    def _respond(self, handler: BaseHTTPRequestHandler, record: Recorded) -> None:
        fault = self._take_fault(record.path)
        delay = self.latency + (fault.delay if fault else 0.0)
        if delay > 0 and self._stopping.wait(delay):
            return
        if fault is not None and not fault.passthrough:
            status, headers, content_type = fault.status, dict(fault.headers), fault.content_type
            body: Any = fault.body(record) if callable(fault.body) else fault.body
        else:
            status, body, headers = self.route(record)
            headers = dict(headers)
            content_type = headers.pop("content-type", None)
        if isinstance(body, (str, bytes)):
            payload = body.encode() if isinstance(body, str) else body
            content_type = content_type or "text/plain"
        else:
            payload = json.dumps(body, separators=(",", ":")).encode()
            content_type = content_type or "application/json"
        with self._cond:
            record.status = status
            record.fault = fault.name if fault is not None else None
            self._cond.notify_all()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass
