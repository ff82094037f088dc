"""Channels named without their secrets: a notification URL carries its token (Telegram's bot
token is even the URL's host), so logs show `scheme://host/***` and any text that may quote a URL
is scrubbed of every secret part of it before it is logged."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

HOST = re.compile(r"^(localhost|\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\d+)?$")
URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$", re.DOTALL)
SHORTEST_SECRET = 4  # shorter pieces ("a", "v1") are not secrets, and scrubbing them would garble messages


def _parts(url: str) -> tuple[str, str, str, str, str] | None:
    """(scheme, userinfo, at-sign, host, the rest) of a URL, or None when it is not one."""
    match = URL.match(url.strip())
    if match is None:
        return None
    user, at, host = match["authority"].rpartition("@")
    return match["scheme"], user, at, host, match["rest"]


def redacted(url: str) -> str:
    """`json://127.0.0.1:8080/***`, `tgram://***/***`, `mailto://***@smtp.example.com`: enough to tell channels apart."""
    parts = _parts(url)
    if parts is None:
        return "***"
    scheme, _, at, host, rest = parts
    return f"{scheme}://{'***@' if at else ''}{host if HOST.match(host) else '***'}{'/***' if rest.strip('/') else ''}"


def secret_parts(url: str) -> set[str]:
    """Every piece of `url` that may be a secret: the URL, user and password, a host that is no host
    name (a token), path segments and query values."""
    pieces = {url.strip()}
    parts = _parts(url)
    if parts is not None:
        _, user, _, host, rest = parts
        pieces.update([user, *user.split(":", 1)])
        if not HOST.match(host):
            pieces.update([host, *re.split(r"[:@]", host)])
        path, _, query = rest.partition("?")
        pieces.update([rest, *path.split("/")])
        pieces.update(value for _, value in parse_qsl(query.split("#", 1)[0]))
    return {p for piece in pieces for p in (piece, unquote(piece)) if len(p) >= SHORTEST_SECRET}


class Scrubber:
    """Replaces every secret part of the channels' URLs with `***` (longest first, so a URL goes whole)."""

    def __init__(self, urls: list[str]) -> None:
        pieces = sorted({part for url in urls for part in secret_parts(url)}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(p) for p in pieces)) if pieces else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._pattern is not None else text
