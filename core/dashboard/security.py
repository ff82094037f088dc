"""What keeps the dashboard safe: loopback by default, a token on any other interface, GET only.

Every request must carry the token when one is set: `Authorization: Bearer …`, an `X-V7-Token`
header, `?token=…` (which also sets an HttpOnly cookie, so links, scripts and the event stream
work after opening `http://host:port/?token=…` once) or that cookie. Responses carry a strict
Content-Security-Policy (scripts only from the dashboard itself), so even a string that slipped
past escaping could not run.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

TOKEN_ENV = "V7_DASHBOARD_TOKEN"
COOKIE = "v7_dashboard_token"
MIN_TOKEN_LENGTH = 16
SAFE_METHODS = {"GET", "HEAD"}
HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class DashboardError(Exception):
    """The dashboard cannot start as asked; the message says why and what to do."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def required_token(host: str, token: str | None) -> str | None:
    """The token requests must carry: the environment's when set; mandatory off loopback."""
    token = token or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise DashboardError(f"{TOKEN_ENV} is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} (e.g. `openssl rand -hex 16`)")
    if token is None and not is_loopback(host):
        raise DashboardError(
            f"--host {host} is not a loopback address: anyone who reaches it could read the signals. "
            f"Set {TOKEN_ENV} to a secret of at least {MIN_TOKEN_LENGTH} characters, which every request must then carry"
        )
    return token


def _presented(scope: dict[str, Any]) -> tuple[list[str], bool]:
    """Tokens the request carries, and whether one came in the query (then it is set as a cookie)."""
    found: list[str] = []
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    if headers.get("authorization", "").lower().startswith("bearer "):
        found.append(headers["authorization"][7:].strip())
    if "x-v7-token" in headers:
        found.append(headers["x-v7-token"])
    if "cookie" in headers:
        cookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:  # a malformed cookie header carries no token
            pass
        if COOKIE in cookie:
            found.append(cookie[COOKIE].value)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
    return found + query, bool(query)


class Guard:
    """ASGI middleware: refuses every method but GET/HEAD, checks the token, adds the security headers.

    HEAD is answered as GET without the body (the routes are GET routes), so what `allow` says holds."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS:
            await _plain(send, 405, "the dashboard is read-only: only GET requests", [(b"allow", b"GET, HEAD")])
            return
        set_cookie = False
        if self.token is not None:
            tokens, from_query = _presented(scope)
            if not any(hmac.compare_digest(t.encode(), self.token.encode()) for t in tokens):
                await _plain(send, 401, f"a token is required: open the dashboard with ?token=… (the value of {TOKEN_ENV})")
                return
            set_cookie = from_query
        head = scope["method"] == "HEAD"
        if head and scope.get("path", "").startswith("/events"):  # a stream has no end to wait for: its headers only
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), *HEADERS]})
            await send({"type": "http.response.body", "body": b""})
            return
        ended = False

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + HEADERS
                if set_cookie:
                    headers.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
                message = {**message, "headers": headers}
            elif head and message["type"] == "http.response.body":
                if ended:
                    return
                ended, message = True, {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"} if head else scope, receive, send_with_headers)


async def _plain(send: Any, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), *HEADERS, *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
