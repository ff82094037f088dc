"""A fake OpenAI-compatible (DeepSeek) chat-completions server over real HTTP on 127.0.0.1.

Tests script it with a queue of replies and read back every request it saw, so they can count
requests and check headers without mocking the `openai` or `httpx` clients:

    with FakeOpenAIServer() as server:
        server.script(error(503, "Service Unavailable"), answer("BUY", 0.7))
        ...  # point the client at server.base_url
        assert server.request_count == 2

When the queue is empty the server answers with `server.default` (a valid HOLD answer).
Reply shapes follow DeepSeek's documented responses (see shared/design/apis.md).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATHS = ("/chat/completions", "/v1/chat/completions")


@dataclass(frozen=True)
class Reply:
    """One scripted behaviour of the server for one request."""

    kind: str  # "json" | "stall" | "keep_alive" | "drop"
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interval: float = 0.1
    then: "Reply | None" = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float


def completion_body(content: str | None, *, model: str = "deepseek-chat", finish_reason: str = "stop",
                    prompt_tokens: int = 600, completion_tokens: int = 40, cache_hit_tokens: int = 512,
                    cache_miss_tokens: int | None = None) -> dict[str, Any]:
    """The JSON body of a successful chat completion, with DeepSeek's usage fields."""
    if cache_miss_tokens is None:
        cache_miss_tokens = prompt_tokens - cache_hit_tokens
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cache_hit_tokens},
            "prompt_cache_hit_tokens": cache_hit_tokens,
            "prompt_cache_miss_tokens": cache_miss_tokens,
        },
        "system_fingerprint": "fp_fake_0001",
    }


def content(text: str | None, **usage: Any) -> Reply:
    """HTTP 200 whose message content is `text` verbatim (blank, invalid JSON, anything)."""
    return Reply("json", 200, completion_body(text, **usage))


def answer(signal: str = "BUY", confidence: float = 0.7, reasoning: str = "Trend and filter agree.", **usage: Any) -> Reply:
    """HTTP 200 with a valid JSON answer in the message content."""
    return content(json.dumps({"signal": signal, "confidence": confidence, "reasoning": reasoning}), **usage)


def error(status: int, message: str, *, error_type: str = "invalid_request_error", code: str | None = None,
          headers: dict[str, str] | None = None) -> Reply:
    """An error status with DeepSeek's error body `{"error": {"message", "type", "param", "code"}}`."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code or f"http_{status}"}}
    return Reply("json", status, body, dict(headers or {}))


def rate_limited(retry_after: str = "1", message: str = "Rate limit reached for requests") -> Reply:
    return error(429, message, error_type="rate_limit_error", headers={"retry-after": retry_after})


def html_error(status: int, text: str = "<html><body>Bad Gateway</body></html>") -> Reply:
    """An error from a CDN in front of the API: not JSON at all."""
    return Reply("json", status, text, {"content-type": "text/html"})


def stall(seconds: float) -> Reply:
    """Accept the request, then send nothing for `seconds` (longer than the client timeout)."""
    return Reply("stall", seconds=seconds)


def keep_alive(seconds: float, interval: float = 0.1, then: Reply | None = None) -> Reply:
    """Send 200 headers, then a blank line every `interval` for `seconds` (DeepSeek under load).

    With `then`, its JSON body follows the blank lines; without, the connection is closed.
    A per-read timeout never fires here: only a deadline on the whole attempt ends it.
    """
    return Reply("keep_alive", seconds=seconds, interval=interval, then=then)


def drop() -> Reply:
    """Close the connection without any response (a connection error for the client)."""
    return Reply("drop")


class FakeOpenAIServer:
    """The server: `script()` replies, `requests` records, `base_url` for the client."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or answer("HOLD", 0.5, "Default answer of the fake server.")
        self.requests: list[RecordedRequest] = []
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------

    def script(self, *replies: Reply) -> "FakeOpenAIServer":
        with self._lock:
            self._queue.extend(replies)
        return self

    def _next(self) -> Reply:
        with self._lock:
            return self._queue.pop(0) if self._queue else self.default

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeOpenAIServer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with fake._lock:
                    fake.requests.append(
                        RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                if self.path.split("?")[0] not in CHAT_PATHS:
                    fake._send(self, error(404, f"no route for {self.path}"))
                    return
                fake._send(self, fake._next())

            def do_GET(self) -> None:  # noqa: N802
                fake._send(self, error(404, f"no route for GET {self.path}"))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- replies ---------------------------------------------------------------------------

    def _send(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        try:
            if reply.kind == "json":
                self._send_json(handler, reply)
            elif reply.kind == "stall":
                self._stopping.wait(reply.seconds)
                handler.close_connection = True
            elif reply.kind == "keep_alive":
                self._send_keep_alive(handler, reply)
            elif reply.kind == "drop":
                handler.close_connection = True
                handler.connection.shutdown(2)
        except (BrokenPipeError, ConnectionResetError, OSError):
            handler.close_connection = True  # the client gave up first: expected in timeout tests

    @staticmethod
    def _send_json(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        text = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        data = text.encode()
        handler.send_response(reply.status)
        headers = {"content-type": "application/json", **reply.headers}
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(data)))
        handler.send_header("x-request-id", uuid.uuid4().hex)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()

    def _send_keep_alive(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()

        def chunk(data: bytes) -> None:
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        ends = time.monotonic() + reply.seconds
        while time.monotonic() < ends and not self._stopping.is_set():
            chunk(b"\n")
            self._stopping.wait(reply.interval)
        if reply.then is not None:
            chunk(json.dumps(reply.then.body).encode())
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        handler.close_connection = True
