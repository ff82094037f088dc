"""A fake Coinbase Exchange on 127.0.0.1: REST candles and the WebSocket feed, over real HTTP and WebSocket.

REST `GET /products/{id}/candles` behaves like the real endpoint (see ../shared/design/apis.md):
rows `[time, low, high, open, close, volume]`, newest first, intervals without trades omitted,
the newest bucket still forming, more than 300 buckets → 400 with the real message, an
unsupported granularity → 400, an unknown product → 404. Candles come from the bundled real
Coinbase hourly data (data/candles/*.csv), laid on a timeline the test controls (`now`), or from
rows a test sets explicitly (`set_rows`, e.g. invalid ones). Buckets can be removed (`omit`) to
make gaps.

The WebSocket speaks the Exchange feed: `subscribe` → `subscriptions` ack, `heartbeat` per product
every `heartbeat_interval` seconds, `ticker` messages pushed by the test (`push_ticker`, shaped
like the real capture in tests/fixtures/coinbase_ws/), and faults: drop every connection
mid-stream (`drop_connections`), go silent (`silence`), out-of-order / duplicate sequences (pass
`sequence=`).
"""

from __future__ import annotations

import csv
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._http_server import FakeHTTPServer, Recorded

REPO = Path(__file__).resolve().parents[2]
CANDLES_DIR = REPO / "data" / "candles"
WS_CAPTURE = REPO / "tests" / "fixtures" / "coinbase_ws" / "DERIVED_coinbase_exchange_ws_ticker_2021-04-17.jsonl"
GRANULARITIES = {60, 300, 900, 3600, 21600, 86400}
TOO_MANY = "granularity too small for the requested time range. Count of aggregations requested exceeds 300"


def load_bars(symbol: str) -> list[tuple[float, float, float, float, float]]:
    """(open, high, low, close, volume) rows, oldest first, from the bundled real candles."""
    with open(CANDLES_DIR / f"{symbol}.csv", newline="") as handle:
        return [
            (float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]), float(r["volume"]))
            for r in csv.DictReader(handle)
        ]


def ticker_template() -> dict[str, Any]:
    """The first real `ticker` message of the capture: the field set and order the fake sends."""
    with open(WS_CAPTURE) as handle:
        for line in handle:
            message = json.loads(line)["msg"]
            if message.get("type") == "ticker":
                return message
    raise RuntimeError(f"no ticker message in {WS_CAPTURE}")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Product:
    bars: list[tuple[float, float, float, float, float]]
    scale: float = 1.0
    explicit: dict[int, list[Any]] = field(default_factory=dict)  # granularity -> rows served as they are
    omitted: set[int] = field(default_factory=set)
    trades: dict[tuple[int, int], list[tuple[float, float]]] = field(default_factory=dict)  # (g, bucket) -> [(price, size)]


@dataclass
class WsSession:
    conn: Any
    index: int
    products: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    silent: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: dict[str, Any]) -> bool:
        from websockets.exceptions import ConnectionClosed

        if self.silent:
            return False
        try:
            with self.lock:
                self.conn.send(json.dumps(message))
            return True
        except (ConnectionClosed, OSError):
            return False


class FakeCoinbase(FakeHTTPServer):
    """REST candles + Exchange WebSocket feed. `now=None` follows the real clock."""

    def __init__(self, products: tuple[str, ...] = ("BTC-USD", "ETH-USD"), now: float | None = None,
                 heartbeat_interval: float = 0.1, subscribe_timeout: float = 5.0) -> None:
        super().__init__()
        self.now = now
        self.heartbeat_interval = heartbeat_interval
        self.subscribe_timeout = subscribe_timeout
        self.products: dict[str, Product] = {}
        for symbol in products:
            self.products[symbol] = Product(load_bars(symbol))
        self._template = ticker_template()
        self._sequence: dict[str, int] = {}
        self._trade_id = 881613
        self.sessions: list[WsSession] = []
        self.ws_connections = 0
        self.subscribe_messages: list[tuple[int, list[str], list[str]]] = []  # (connection index, products, channels)
        self._ws_server: Any = None
        self._ws_thread: threading.Thread | None = None

    # -- clock and data -------------------------------------------------------------------

    def clock(self) -> float:
        return time.time() if self.now is None else self.now

    def set_now(self, now: float) -> None:
        self.now = now

    def advance(self, seconds: float) -> None:
        self.now = self.clock() + seconds

    def add_product(self, symbol: str, like: str = "BTC-USD", scale: float = 1.0) -> None:
        source = self.products[like] if like in self.products else Product(load_bars(like))
        self.products[symbol] = Product(source.bars, scale=scale)

    def set_rows(self, symbol: str, granularity: int, rows: list[list[Any]]) -> None:
        """Serve exactly these `[time, low, high, open, close, volume]` rows (valid or not) for the product."""
        self.products[symbol].explicit[granularity] = rows

    def omit(self, symbol: str, timestamps: list[int]) -> None:
        """Buckets with no trades: the real API leaves them out."""
        self.products[symbol].omitted.update(int(t) for t in timestamps)

    def bar(self, symbol: str, granularity: int, bucket: int) -> list[Any] | None:
        """The row the API would send for a bucket (forming bucket partial), or None when it has no trades."""
        product = self.products[symbol]
        now = self.clock()
        current = int(now // granularity) * granularity
        if bucket > current:
            return None
        if granularity in product.explicit:
            return next((r for r in product.explicit[granularity] if isinstance(r, list) and r and r[0] == bucket), None)
        if bucket in product.omitted:
            return None
        o, h, l, c, v = product.bars[(bucket // granularity) % len(product.bars)]
        s = product.scale
        o, h, l, c = o * s, h * s, l * s, c * s
        trades = product.trades.get((granularity, bucket), [])
        if bucket == current:
            fraction = (now - bucket) / granularity
            c = o + (c - o) * fraction
            h, l, v = max(o, c), min(o, c), v * fraction
        for price, size in trades:
            h, l, c, v = max(h, price), min(l, price), price, v + size
        return [bucket, round(l, 8), round(h, 8), round(o, 8), round(c, 8), round(v, 8)]

    # -- REST -------------------------------------------------------------------------------

    def route(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        parts = request.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "products" and parts[2] == "candles":
            return self._candles(parts[1], request.query)
        return 404, {"message": "NotFound"}, {}

    def _candles(self, symbol: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if symbol not in self.products:
            return 404, {"message": "NotFound"}, {}
        try:
            granularity = int(query.get("granularity", "60"))
        except ValueError:
            granularity = -1
        if granularity not in GRANULARITIES:
            return 400, {"message": "Unsupported granularity"}, {}
        now = self.clock()
        if "start" not in query and "end" not in query:
            end, start = now, now - (300 - 1) * granularity
        elif "start" in query and "end" in query:
            try:
                start, end = parse_time(query["start"]), parse_time(query["end"])
            except ValueError:
                return 400, {"message": "Invalid start or end"}, {}
        else:
            return 400, {"message": "start and end must both be provided"}, {}
        if start > end:
            return 400, {"message": "start must be before end"}, {}
        if (end - start) / granularity > 300:
            return 400, {"message": TOO_MANY}, {}
        explicit = self.products[symbol].explicit.get(granularity)
        if explicit is not None:
            def wanted(row: Any) -> bool:  # rows a test set are served as they are, junk included
                if not isinstance(row, list) or not row or not isinstance(row[0], (int, float)):
                    return True
                return start <= row[0] <= min(end, now)
            rows = sorted((r for r in explicit if wanted(r)), key=lambda r: r[0] if isinstance(r, list) and r and isinstance(r[0], (int, float)) else 0)
        else:
            first = -(-int(start) // granularity) * granularity
            rows = [row for bucket in range(first, int(end) + 1, granularity) if (row := self.bar(symbol, granularity, bucket)) is not None]
        rows.reverse()  # newest first, like the real API
        return 200, rows, {}

    # -- WebSocket --------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        assert self._ws_server is not None, "server not started"
        return f"ws://127.0.0.1:{self._ws_server.socket.getsockname()[1]}"

    def start(self) -> "FakeCoinbase":
        from websockets.sync.server import serve

        super().start()
        self._ws_server = serve(self._ws_handler, "127.0.0.1", 0, compression=None)
        self._ws_thread = threading.Thread(target=self._ws_server.serve_forever, daemon=True, name="FakeCoinbaseWS")
        self._ws_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for session in self.live_sessions():
            try:
                session.conn.close()
            except Exception:
                pass
        if self._ws_server is not None:
            self._ws_server.shutdown()
        if self._ws_thread is not None:
            self._ws_thread.join(timeout=5)
        super().stop()

    def live_sessions(self) -> list[WsSession]:
        with self._cond:
            return list(self.sessions)

    def _ws_handler(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with self._cond:
            self.ws_connections += 1
            session = WsSession(conn, self.ws_connections)
            self.sessions.append(session)
            self._cond.notify_all()
        opened = time.monotonic()
        last_heartbeat = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    raw = conn.recv(timeout=self.heartbeat_interval)
                except TimeoutError:
                    raw = None
                if raw is not None:
                    self._on_client_message(session, raw)
                if not session.products and time.monotonic() - opened > self.subscribe_timeout:
                    conn.close(1008, "subscribe within 5 seconds")  # the real feed drops idle clients
                    return
                if session.products and "heartbeat" in session.channels and time.monotonic() - last_heartbeat >= self.heartbeat_interval:
                    last_heartbeat = time.monotonic()
                    for product in sorted(session.products):
                        session.send({
                            "type": "heartbeat", "last_trade_id": self._trade_id, "product_id": product,
                            "sequence": self._sequence.get(product, 0), "time": iso(self.clock()),
                        })
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                if session in self.sessions:
                    self.sessions.remove(session)
                self._cond.notify_all()

    def _on_client_message(self, session: WsSession, raw: Any) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            session.send({"type": "error", "message": "Malformed JSON", "reason": "message is not valid JSON"})
            return
        kind = message.get("type")
        if kind not in ("subscribe", "unsubscribe"):
            session.send({"type": "error", "message": "Failed to subscribe", "reason": f"{kind!r} is not a valid message type"})
            return
        products = [p for p in message.get("product_ids") or [] if isinstance(p, str)]
        channels = []
        for channel in message.get("channels") or []:
            if isinstance(channel, str):
                channels.append(channel)
            elif isinstance(channel, dict) and isinstance(channel.get("name"), str):
                channels.append(channel["name"])
                products.extend(channel.get("product_ids") or [])
        unknown = [p for p in products if p not in self.products]
        if unknown:
            session.send({"type": "error", "message": "Failed to subscribe", "reason": f"{unknown[0]} is not a valid product"})
            products = [p for p in products if p not in unknown]
        with self._cond:
            if kind == "subscribe":
                session.products.update(products)
                session.channels.update(channels)
                self.subscribe_messages.append((session.index, products, channels))
            else:
                session.products.difference_update(products)
            self._cond.notify_all()
        session.send({
            "type": "subscriptions",
            "channels": [{"name": name, "product_ids": sorted(session.products)} for name in sorted(session.channels)],
        })

    def push_ticker(self, symbol: str, price: float, size: float = 0.01, side: str = "buy",
                    sequence: int | None = None, at: float | None = None) -> dict[str, Any]:
        """Send a `ticker` (one trade) to every subscribed connection; trades also reach the REST forming bucket."""
        at = self.clock() if at is None else at
        price = round(price, 2)  # the price as the message carries it
        with self._cond:
            if sequence is None:
                sequence = self._sequence.get(symbol, 37475248783) + 3  # gaps are normal on ticker
            self._sequence[symbol] = max(sequence, self._sequence.get(symbol, 0))
            self._trade_id += 1
            trade_id = self._trade_id
            for granularity in GRANULARITIES:
                bucket = int(at // granularity) * granularity
                self.products[symbol].trades.setdefault((granularity, bucket), []).append((price, size))
        message = dict(self._template)
        message.update({
            "type": "ticker", "sequence": sequence, "product_id": symbol, "price": f"{price:.2f}",
            "best_bid": f"{price - 0.01:.2f}", "best_ask": f"{price + 0.01:.2f}", "side": side,
            "time": iso(at), "trade_id": trade_id, "last_size": f"{size:.8f}",
        })
        self.broadcast(message, symbol, channel="ticker")
        return message

    def broadcast(self, message: dict[str, Any] | str, symbol: str | None = None, channel: str | None = None) -> int:
        """Send any message (or raw text) to the connections subscribed to `symbol` (all when None)."""
        sent = 0
        for session in self.live_sessions():
            if symbol is not None and symbol not in session.products:
                continue
            if channel is not None and channel not in session.channels:
                continue
            if isinstance(message, str):
                if not session.silent:
                    with session.lock:
                        session.conn.send(message)
                    sent += 1
            elif session.send(message):
                sent += 1
        return sent

    def drop_connections(self) -> int:
        """Kill every open socket mid-stream, without a close frame."""
        sessions = self.live_sessions()
        for session in sessions:
            session.conn.close_socket()
        return len(sessions)

    def silence(self) -> int:
        """Open connections stop sending anything (heartbeats included) but stay open; new ones behave."""
        sessions = self.live_sessions()
        for session in sessions:
            session.silent = True
        return len(sessions)

    def subscribed(self, symbol: str) -> bool:
        with self._cond:
            return any(symbol in s.products and not s.silent for s in self.sessions)
