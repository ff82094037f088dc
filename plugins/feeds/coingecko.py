"""CoinGecko market context: price, market cap and rank, 24 h volume, 1h/24h/7d change, and market-wide figures.

One `/coins/markets` request covers every mapped coin and one `/global` request the whole market;
both are cached for `cache_seconds`, so each engine iteration costs at most two requests whatever
the number of symbols. Symbols map to CoinGecko ids explicitly (`ids`), never by guessing from
tickers. The API key is read from the environment variable named in `api_key_env` at every
request; it is never logged, stored or put in an error message.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from v7 import Feed, MarketContext, PluginConfig, get_logger, hookimpl

from v7.http import FeedError, FeedRequestError, FeedResponseError, JsonHttpClient, RateLimiter, RetryPolicy

PUBLIC_URL = "https://api.coingecko.com/api/v3"
PRO_URL = "https://pro-api.coingecko.com/api/v3"
IDS_PER_REQUEST = 250
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DEFAULT_IDS: dict[str, str] = {
    # Keyed by base asset; a symbol's own entry (e.g. "BTC-EUR") in `ids` wins over its base asset's.
    "BTC": "bitcoin",
    "ETH": "ethereum",
    "SOL": "solana",
    "LTC": "litecoin",
    "XRP": "ripple",
    "ADA": "cardano",
    "DOGE": "dogecoin",
    "DOT": "polkadot",
    "AVAX": "avalanche-2",
    "LINK": "chainlink",
    "MATIC": "matic-network",
    "POL": "polygon-ecosystem-token",
    "BCH": "bitcoin-cash",
    "XLM": "stellar",
    "ATOM": "cosmos",
    "UNI": "uniswap",
    "ETC": "ethereum-classic",
    "SHIB": "shiba-inu",
    "AAVE": "aave",
    "NEAR": "near",
    "FIL": "filecoin",
    "ALGO": "algorand",
    "TRX": "tron",
    "BNB": "binancecoin",
    "USDT": "tether",
    "USDC": "usd-coin",
}


class CoinGeckoConfig(PluginConfig):
    transport_fields = frozenset({
        "api_key_env", "plan", "base_url", "connect_timeout_seconds", "read_timeout_seconds", "requests_per_minute", "burst",
        "max_retries", "backoff_base_seconds", "backoff_max_seconds", "max_retry_after_seconds", "cache_seconds",
    })

    base_url: str = Field(
        default=PUBLIC_URL, description=f"API base URL; with plan = 'pro' and no base_url set: {PRO_URL}"
    )
    plan: Literal["demo", "pro"] = Field(
        default="demo", description="demo: keyless or a Demo key (header x-cg-demo-api-key); pro: a paid key (x-cg-pro-api-key)"
    )
    api_key_env: str | None = Field(
        default=None, description="NAME of the environment variable holding the API key; unset = keyless public access"
    )
    vs_currency: str = Field(default="usd", min_length=1, description="Currency of prices, caps and volumes")
    ids: dict[str, str] = Field(
        default_factory=dict, description="Symbol (BTC-USD) or base asset (BTC) → CoinGecko id; added to the defaults"
    )
    use_default_ids: bool = Field(default=True, description="Include the built-in ids of the major coins")
    cache_seconds: float = Field(default=60.0, ge=0, description="How long one snapshot serves every symbol")
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=15.0, gt=0)
    requests_per_minute: float = Field(default=30.0, gt=0, description="Client-side rate limit (Demo plans allow ~30/min)")
    burst: int = Field(default=3, ge=1)
    max_retries: int = Field(default=2, ge=0, le=20)
    backoff_base_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    max_retry_after_seconds: float = Field(default=60.0, ge=0, description="Longest `retry-after` honoured before giving up")

    @model_validator(mode="after")
    def _host(self) -> "CoinGeckoConfig":
        if self.plan == "pro" and "base_url" not in self.model_fields_set:
            self.base_url = PRO_URL
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        self.vs_currency = self.vs_currency.lower()
        return self


class UnknownSymbolError(FeedError):
    """No CoinGecko id is configured for a symbol."""


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


class CoinGeckoContextFeed(Feed):
    """Market context per symbol from CoinGecko `/coins/markets` and `/global`, cached."""

    name = "coingecko"
    version = "1.0"
    provides: ClassVar[frozenset[str]] = frozenset({"context"})
    live: ClassVar[bool] = True
    Config = CoinGeckoConfig

    def __init__(self, config: CoinGeckoConfig | None = None) -> None:
        super().__init__(config)
        cfg: CoinGeckoConfig = self.config
        self._http = JsonHttpClient(
            cfg.base_url,
            plugin=self.name,
            connect_timeout=cfg.connect_timeout_seconds,
            read_timeout=cfg.read_timeout_seconds,
            limiter=RateLimiter(cfg.requests_per_minute / 60.0, cfg.burst),
            retry=RetryPolicy(cfg.max_retries, cfg.backoff_base_seconds, cfg.backoff_max_seconds, cfg.max_retry_after_seconds),
            max_connections=4,
        )
        self._lock = threading.Lock()
        self._markets: dict[str, dict[str, Any]] | None = None
        self._markets_at = -math.inf
        self._markets_failure: tuple[float, FeedError] | None = None
        self._global: dict[str, Any] | None = None
        self._global_at = -math.inf
        self._global_failed_at = -math.inf
        self._warned_keyless = False

    # -- public ---------------------------------------------------------------------------

    def ids(self) -> dict[str, str]:
        """The effective mapping: defaults (unless disabled) overlaid with the configured `ids`."""
        mapping = dict(DEFAULT_IDS) if self.config.use_default_ids else {}
        mapping.update(self.config.ids)
        return mapping

    def coin_id(self, symbol: str) -> str | None:
        mapping = self.ids()
        if symbol in mapping:
            return mapping[symbol]
        return mapping.get(symbol.split("-", 1)[0])

    def fetch_context(self, symbol: str) -> MarketContext | None:
        log = get_logger(plugin=self.name, symbol=symbol)
        coin = self.coin_id(symbol)
        if coin is None:
            raise UnknownSymbolError(
                f"coingecko: no CoinGecko id for {symbol!r}; add one under [feeds.coingecko.ids], "
                f'e.g. "{symbol}" = "<id from coingecko.com>"'
            )
        markets, market = self._snapshot(log)
        row = markets.get(coin)
        if row is None:
            raise FeedError(f"coingecko: /coins/markets has no data for id {coin!r} (symbol {symbol}); check [feeds.coingecko.ids]")
        vs = self.config.vs_currency
        context = MarketContext(
            source=self.name,
            price=_float(row.get("current_price")),
            market_cap=_float(row.get("market_cap")),
            market_cap_rank=_int(row.get("market_cap_rank")),
            volume_24h=_float(row.get("total_volume")),
            change_1h_pct=_float(row.get("price_change_percentage_1h_in_currency")),
            change_24h_pct=_float(row.get("price_change_percentage_24h_in_currency", row.get("price_change_percentage_24h"))),
            change_7d_pct=_float(row.get("price_change_percentage_7d_in_currency")),
        )
        if market is not None:
            total_cap = market.get("total_market_cap")
            dominance = market.get("market_cap_percentage")
            context.total_market_cap = _float(total_cap.get(vs)) if isinstance(total_cap, dict) else None
            context.total_market_cap_change_24h_pct = _float(market.get("market_cap_change_percentage_24h_usd"))
            if isinstance(dominance, dict):
                context.btc_dominance_pct = _float(dominance.get("btc"))
                context.eth_dominance_pct = _float(dominance.get("eth"))
        return context

    def close(self) -> None:
        self._http.close()

    # -- requests ---------------------------------------------------------------------------

    def _auth(self, log: Any) -> tuple[dict[str, str], str | None]:
        """The key header for the plan, read from the environment now (keys can rotate between calls)."""
        cfg: CoinGeckoConfig = self.config
        env = cfg.api_key_env
        if not env:
            if cfg.plan == "pro":
                raise FeedRequestError("coingecko: plan 'pro' needs an API key: set api_key_env to the name of the environment variable holding it")
            return {}, None
        shown = env if ENV_NAME.match(env) else "named in api_key_env (that value does not look like a variable name: put the key in an environment variable and name the variable)"
        key = os.environ.get(env, "").strip() if ENV_NAME.match(env) else ""
        if not key:
            if cfg.plan == "pro":
                raise FeedRequestError(f"coingecko: plan 'pro' needs an API key, but the environment variable {shown} is not set")
            if not self._warned_keyless:
                self._warned_keyless = True
                log.warning("CoinGecko API key not set; using keyless public access", env_var=env if ENV_NAME.match(env) else None)
            return {}, None
        return {"x-cg-pro-api-key" if cfg.plan == "pro" else "x-cg-demo-api-key": key}, key

    def _get(self, path: str, params: dict[str, Any], log: Any) -> Any:
        headers, key = self._auth(log)
        return self._http.get_json(path, params, headers=headers, secrets=[key], log=log)

    def _snapshot(self, log: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
        """Markets for every mapped coin plus the global figures, from the cache when fresh.

        Callers that waited on the lock while another thread fetched share its outcome, success or
        failure, instead of repeating the request.
        """
        asked = time.monotonic()
        ttl = self.config.cache_seconds
        with self._lock:
            now = time.monotonic()
            if self._markets is not None and (now - self._markets_at < ttl or self._markets_at >= asked):
                markets = self._markets
            elif self._markets_failure is not None and self._markets_failure[0] >= asked:
                error = self._markets_failure[1]
                raise type(error)(str(error), error.status)
            else:
                try:
                    markets = self._fetch_markets(log)
                except FeedError as exc:
                    self._markets_failure = (time.monotonic(), exc)
                    raise
                self._markets, self._markets_at, self._markets_failure = markets, time.monotonic(), None
            now = time.monotonic()
            if self._global is not None and (now - self._global_at < ttl or self._global_at >= asked):
                market = self._global
            elif self._global_failed_at >= asked:
                market = None
            else:
                try:
                    market = self._fetch_global(log)
                    self._global, self._global_at = market, time.monotonic()
                except FeedError as exc:
                    # Market-wide figures are a nicety: the coin's own context is still worth having.
                    self._global_failed_at = time.monotonic()
                    log.warning("CoinGecko /global failed; market-wide fields left empty", error=str(exc))
                    market = None
        return markets, market

    def _fetch_markets(self, log: Any) -> dict[str, dict[str, Any]]:
        ids = sorted(set(self.ids().values()))
        markets: dict[str, dict[str, Any]] = {}
        for first in range(0, len(ids), IDS_PER_REQUEST):
            chunk = ids[first:first + IDS_PER_REQUEST]
            body = self._get(
                "/coins/markets",
                {
                    "vs_currency": self.config.vs_currency,
                    "ids": ",".join(chunk),
                    "order": "market_cap_desc",
                    "per_page": IDS_PER_REQUEST,
                    "page": 1,
                    "sparkline": "false",
                    "price_change_percentage": "1h,24h,7d",
                },
                log,
            )
            if not isinstance(body, list):
                raise FeedResponseError(f"coingecko: GET /coins/markets: expected a JSON array, got {type(body).__name__}")
            for row in body:
                if isinstance(row, dict) and isinstance(row.get("id"), str):
                    markets[row["id"]] = row
        log.debug("CoinGecko markets fetched", coins=len(markets))
        return markets

    def _fetch_global(self, log: Any) -> dict[str, Any]:
        body = self._get("/global", {}, log)
        if not isinstance(body, dict):
            raise FeedResponseError(f"coingecko: GET /global: expected a JSON object, got {type(body).__name__}")
        # The API wraps the figures in "data"; some SDKs and mirrors put them at the top level.
        data = body.get("data")
        return data if isinstance(data, dict) else body


@hookimpl
def register_feeds(register):
    register(CoinGeckoContextFeed)
