"""Coinbase Exchange WebSocket ticker: the socket thread, its messages, and the forming bar they build.

A background thread runs its own asyncio loop, subscribed to `ticker` + `heartbeat` for every
product asked for. Ticker trades update the forming bucket's high, low, close and volume; a
heartbeat is the liveness signal (silence = reconnect). After a reconnect the missed candles are
backfilled over REST and the forming bars re-seeded. `CoinbaseLive` is a mixin of
`CoinbaseCandleFeed` (see `__init__.py`); REST (`rest.py`) stays the authority on closed bars.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from v7 import get_logger, parse_utc
from v7.http import FeedError, backoff_delay

from .rest import _History, number, step_of

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

    from . import CoinbaseConfig

CHANNELS = ["heartbeat", "ticker"]
REJECT_LOG_INTERVAL = 60.0  # seconds between "rejected absurd tick" warnings for one product
INVALID_PRODUCT = re.compile(r"^(\S+) is not a valid product")


class _Resubscribe(Exception):
    """The server refused a product: reconnect and subscribe the others again."""


@dataclass
class _Bar:
    """The forming bucket: seeded from REST, then updated by ticker trades."""

    bucket: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def add_trade(self, price: float, size: float) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += size


def trade_time(value: Any) -> float | None:
    """An exchange timestamp such as 2022-10-19T23:28:22.061769Z as unix seconds; None when unreadable."""
    try:
        return parse_utc(value).timestamp()
    except ValueError:
        return None


class CoinbaseLive:
    """Live half of the Coinbase feed: socket thread, subscriptions, ticks, backfill after reconnects."""

    name: str
    config: "CoinbaseConfig"
    clock: Callable[[], float]
    _histories: dict[tuple[str, str], _History]

    def _init_live(self) -> None:
        # Shared with the socket thread. Every live event calls notify_all, so a caller can wait on it.
        self._state = threading.Condition()
        self._symbols: dict[str, set[str]] = {}  # product -> granularities asked for
        self.invalid_products: set[str] = set()  # refused by the socket; not subscribed again
        self._forming: dict[tuple[str, str], _Bar] = {}
        self._last_price: dict[str, float] = {}
        self._last_sequence: dict[str, int] = {}
        self._subscribed: set[str] = set()
        self._connected = False
        self._connection_id = 0
        self._last_heartbeat = 0.0
        self._counts: dict[str, int] = {  # what happened on the socket; logged, and read by test subclasses
            "connects": 0, "reconnects": 0, "disconnects": 0, "backfills": 0, "ticks": 0,
            "heartbeats": 0, "ignored_messages": 0, "malformed_messages": 0, "rejected_ticks": 0,
        }
        # The price a new tick is checked against (`max_tick_move`): the last accepted tick, or REST's
        # latest close when that is newer (a bucket closed, the forming bar was re-seeded).
        self._reference_price: dict[str, float] = {}
        self._rejected_since_log: dict[str, int] = {}  # product -> rejects not yet logged
        self._reject_logged_at: dict[str, float] = {}  # product -> monotonic time of the last warning
        self.last_disconnect: str | None = None
        self._closing = threading.Event()
        self._ws_thread: threading.Thread | None = None
        self._loop: "asyncio.AbstractEventLoop | None" = None
        self._astop: "asyncio.Event | None" = None
        self._awake: "asyncio.Event | None" = None

    if TYPE_CHECKING:  # pragma: no cover - supplied by the REST mixin
        def _key_lock(self, key: tuple[str, str]) -> threading.Lock: ...
        def _refresh(self, symbol: str, granularity: str, lookback: int, log: Any, force: bool = False) -> _History: ...
        def _mark_refused(self, symbol: str, reason: str, log: Any = None) -> None: ...

    @property
    def connected(self) -> bool:
        with self._state:
            return self._connected

    @property
    def subscribed_products(self) -> set[str]:
        with self._state:
            return set(self._subscribed)

    def _stop_live(self) -> None:
        """Stop the socket thread (part of `close`)."""
        self._closing.set()
        loop, stop = self._loop, self._astop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already closed
                pass
        if self._ws_thread is not None:
            self._ws_thread.join(timeout=self.config.connect_timeout_seconds + 2)

    # -- what the REST half asks ------------------------------------------------------------

    def _connection(self) -> int:
        with self._state:
            return self._connection_id

    def _live_fresh(self, symbol: str, history: _History) -> bool:
        """True when the socket has kept this symbol's forming bar current since it was last seeded."""
        with self._state:
            return (
                self._connected
                and symbol in self._subscribed
                and history.seed_connection == self._connection_id
                and time.monotonic() - self._last_heartbeat < self.config.heartbeat_timeout_seconds
            )

    def _seed_forming(self, symbol: str, granularity: str, current: int, row: list[Any] | None) -> None:
        """Start the forming bar from REST's view of it (true open, high, low, volume so far)."""
        key = (symbol, granularity)
        with self._state:
            if row is not None:
                values = [number(v) for v in row[1:6]]
                if all(v is not None for v in values):
                    low, high, open_, close, volume = values  # type: ignore[misc]
                    self._forming[key] = _Bar(current, open_, high, low, close, volume)
                    if close > 0:
                        self._reference_price[symbol] = close  # REST's view is the newest: ticks are checked against it
                    return
            bar = self._forming.get(key)
            if bar is not None and bar.bucket != current:
                del self._forming[key]

    def _forming_bar(self, symbol: str, granularity: str, current: int) -> tuple[int, float, float, float, float, float] | None:
        with self._state:
            bar = self._forming.get((symbol, granularity))
            if bar is None or bar.bucket != current:
                return None
            return (bar.bucket, bar.open, bar.high, bar.low, bar.close, bar.volume)

    def _note_closed_close(self, symbol: str, close: float) -> None:
        """REST's newest closed close, the tick reference until a tick or a forming seed is newer."""
        if close > 0:
            with self._state:
                self._reference_price[symbol] = close

    def _forget_invalid(self, symbol: str) -> None:
        """A refused product was accepted again over REST: the socket may subscribe it again."""
        with self._state:
            self.invalid_products.discard(symbol)

    # -- socket thread ----------------------------------------------------------------------

    def _watch(self, symbol: str, granularity: str) -> None:
        """Remember the symbol for the socket, subscribe it if new, start the socket thread on first use."""
        start = False
        with self._state:
            if symbol in self.invalid_products:
                return
            new = symbol not in self._symbols
            self._symbols.setdefault(symbol, set()).add(granularity)
            if self._ws_thread is None and not self._closing.is_set():
                self._ws_thread = threading.Thread(target=self._ws_thread_main, name="coinbase-ws", daemon=True)
                start = True
        if start:
            self._ws_thread.start()
        elif new and self._loop is not None and self._awake is not None:
            try:
                self._loop.call_soon_threadsafe(self._awake.set)
            except RuntimeError:
                pass

    def _ws_thread_main(self) -> None:
        import asyncio

        try:
            asyncio.run(self._ws_main())
        except Exception as exc:  # noqa: BLE001 - the socket is best effort; REST keeps working
            get_logger(plugin=self.name).error("websocket thread stopped", error=f"{type(exc).__name__}: {exc}")

    async def _ws_main(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._astop = asyncio.Event()
        self._awake = asyncio.Event()
        if self._closing.is_set():
            return
        log = get_logger(plugin=self.name)
        cfg = self.config
        failures = 0
        while not self._astop.is_set():
            with self._state:
                idle = not self._symbols
            if idle:  # every product was refused: wait for a new one rather than subscribe to nothing
                self._awake.clear()
                waits = [asyncio.ensure_future(self._astop.wait()), asyncio.ensure_future(self._awake.wait())]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()
                continue
            healthy = False
            try:
                healthy = await self._ws_session(log)
            except _Resubscribe as exc:
                healthy = True
                with self._state:
                    self.last_disconnect = str(exc)
            except Exception as exc:  # noqa: BLE001 - every failure leads to a reconnect
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                with self._state:
                    self.last_disconnect = reason
                if not self._astop.is_set():
                    log.warning("websocket disconnected; reconnecting", reason=reason)
            finally:
                with self._state:
                    if self._connected:
                        self._counts["disconnects"] += 1
                    self._connected = False
                    self._subscribed = set()
                    self._state.notify_all()
            if self._astop.is_set():
                break
            failures = 0 if healthy else failures + 1
            delay = backoff_delay(max(0, failures - 1), cfg.reconnect_backoff_base_seconds, cfg.reconnect_backoff_max_seconds)
            try:
                await asyncio.wait_for(self._astop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    async def _ws_session(self, log: Any) -> bool:
        """One connection: subscribe, read until stopped or broken; True when it ever got a heartbeat."""
        import asyncio

        from websockets.asyncio.client import connect

        cfg = self.config
        assert self._astop is not None and self._awake is not None
        healthy = False
        async with connect(cfg.ws_url, open_timeout=cfg.connect_timeout_seconds, close_timeout=1, max_queue=1024) as ws:
            with self._state:
                products = sorted(self._symbols)
                self._connection_id += 1
                reconnect = self._counts["connects"] > 0
                self._counts["connects"] += 1
                if reconnect:
                    self._counts["reconnects"] += 1
                self._connected = True
                self._last_sequence.clear()  # a new connection may legitimately restart sequences
                self._last_heartbeat = time.monotonic()
                self._state.notify_all()
            sent = set(products)
            self._awake.clear()
            await ws.send(json.dumps({"type": "subscribe", "product_ids": products, "channels": CHANNELS}))
            log.info("websocket connected", url=cfg.ws_url, products=products, reconnect=reconnect)
            if reconnect:
                threading.Thread(target=self._backfill, name="coinbase-backfill", daemon=True).start()
            deadline = time.monotonic() + cfg.heartbeat_timeout_seconds
            stop_task = asyncio.ensure_future(self._astop.wait())
            awake_task = asyncio.ensure_future(self._awake.wait())
            recv_task = asyncio.ensure_future(ws.recv())
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"no heartbeat for {cfg.heartbeat_timeout_seconds:g} s")
                    done, _ = await asyncio.wait({stop_task, awake_task, recv_task}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                    if stop_task in done:
                        return healthy
                    if awake_task in done:
                        self._awake.clear()
                        awake_task = asyncio.ensure_future(self._awake.wait())
                        with self._state:
                            new = sorted(set(self._symbols) - sent)
                        if new:
                            sent.update(new)
                            await ws.send(json.dumps({"type": "subscribe", "product_ids": new, "channels": CHANNELS}))
                            log.info("websocket subscribing", products=new)
                    if recv_task in done:
                        raw = recv_task.result()  # raises ConnectionClosed when the socket dropped
                        recv_task = asyncio.ensure_future(ws.recv())
                        if self._handle_message(raw, log):
                            healthy = True
                            deadline = time.monotonic() + cfg.heartbeat_timeout_seconds
            finally:
                for task in (stop_task, awake_task, recv_task):
                    task.cancel()

    # -- messages ---------------------------------------------------------------------------

    def _handle_message(self, raw: Any, log: Any) -> bool:
        """Apply one socket message; returns True for a heartbeat (the liveness signal)."""
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            message = None
        if not isinstance(message, dict):
            with self._state:
                self._counts["malformed_messages"] += 1
                self._state.notify_all()
            return False
        kind = message.get("type")
        if kind == "ticker":
            self._on_ticker(message)
        elif kind == "heartbeat":
            with self._state:
                self._last_heartbeat = time.monotonic()
                self._counts["heartbeats"] += 1
                self._state.notify_all()
            return True
        elif kind == "subscriptions":
            products: set[str] = set()
            for channel in message.get("channels") or []:
                if isinstance(channel, dict) and channel.get("name") == "ticker":
                    products.update(p for p in channel.get("product_ids") or [] if isinstance(p, str))
            with self._state:
                self._subscribed = products
                self._state.notify_all()
            log.debug("websocket subscriptions", products=sorted(products))
        elif kind == "error":
            reason = message.get("reason")
            log.warning("websocket error message", message=message.get("message"), reason=reason)
            refused = INVALID_PRODUCT.match(reason) if isinstance(reason, str) else None
            if refused:
                self._mark_refused(refused.group(1), f"websocket: {reason}")  # fetch_candles backs off too
                with self._state:
                    known = self._symbols.pop(refused.group(1), None) is not None
                    self.invalid_products.add(refused.group(1))
                    self._state.notify_all()
                if known:
                    raise _Resubscribe(f"the feed refused {refused.group(1)}: subscribing the other products again")
        return False

    def _on_ticker(self, message: dict[str, Any]) -> None:
        product = message.get("product_id")
        price = number(message.get("price"))
        size = number(message.get("last_size")) or 0.0
        sequence = message.get("sequence")
        if not isinstance(product, str) or price is None or price <= 0 or size < 0:
            with self._state:
                self._counts["malformed_messages"] += 1
                self._state.notify_all()
            return
        traded_at = trade_time(message.get("time"))
        with self._state:
            if isinstance(sequence, int):
                last = self._last_sequence.get(product)
                if last is not None and sequence <= last:
                    # Out of order or a duplicate; gaps (sequence > last + 1) are normal on `ticker`.
                    self._counts["ignored_messages"] += 1
                    self._state.notify_all()
                    return
                self._last_sequence[product] = sequence
            reference = self._reference_price.get(product)
            band = self.config.max_tick_move
            if reference is not None and not reference * (1 - band) <= price <= reference * (1 + band):
                self._counts["rejected_ticks"] += 1
                self._rejected_since_log[product] = self._rejected_since_log.get(product, 0) + 1
                now = time.monotonic()
                last_logged = self._reject_logged_at.get(product)
                due = last_logged is None or now - last_logged >= REJECT_LOG_INTERVAL
                rejected = self._rejected_since_log.pop(product) if due else 0
                if due:
                    self._reject_logged_at[product] = now
                total = self._counts["rejected_ticks"]
                self._state.notify_all()
            else:
                reference = None
        if reference is not None:  # rejected: never the forming bar's close, nor the latest price
            if rejected:  # the first reject, then at most one warning a minute per product, with the count since
                get_logger(plugin=self.name, symbol=product).warning(
                    "rejected absurd tick", symbol=product, price=price, reference=reference,
                    max_tick_move=band, rejected=rejected, total_rejected=total,
                )
            return
        with self._state:
            if traded_at is None:
                traded_at = self.clock()
            self._reference_price[product] = price
            self._last_price[product] = price
            self._counts["ticks"] += 1
            for granularity in self._symbols.get(product, ()):
                step = step_of(granularity)
                bucket = int(traded_at // step) * step
                key = (product, granularity)
                bar = self._forming.get(key)
                if bar is None or bucket > bar.bucket:
                    self._forming[key] = _Bar(bucket, price, price, price, price, size)
                elif bucket == bar.bucket:
                    bar.add_trade(price, size)
                # A late trade for a closed bucket is left to REST, the authority on closed bars.
            self._state.notify_all()

    def _backfill(self) -> None:
        """After a reconnect: fetch the candles missed while disconnected and re-seed the forming bars.

        The seed waits for the server's subscription acknowledgement (up to the heartbeat timeout):
        a forming bar seeded before ticks flow again would miss the trades in between, and the next
        fetch would have to seed it once more.
        """
        log = get_logger(plugin=self.name)
        wanted = {symbol for symbol, _ in self._histories}
        with self._state:
            self._state.wait_for(
                lambda: self._closing.is_set() or not self._connected or wanted <= self._subscribed,
                timeout=self.config.heartbeat_timeout_seconds,
            )
        for (symbol, granularity), history in list(self._histories.items()):
            if self._closing.is_set():
                return
            try:
                with self._key_lock((symbol, granularity)):
                    self._refresh(symbol, granularity, history.keep, log.bind(symbol=symbol), force=True)
            except FeedError as exc:
                log.warning("backfill after reconnect failed; the next fetch retries", symbol=symbol, error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a background thread must not die silently
                log.error("backfill after reconnect failed", symbol=symbol, error=f"{type(exc).__name__}: {exc}")
        with self._state:
            self._counts["backfills"] += 1
            self._state.notify_all()
        log.info("backfill after reconnect done", symbols=sorted({s for s, _ in self._histories}))
