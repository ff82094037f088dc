"""A fake CoinGecko API v3 on 127.0.0.1 (real HTTP): `/coins/markets`, `/global`, `/ping`.

Bodies come from real responses (tests/fixtures/coingecko/, JKorf/CoinGecko.Net, MIT): the
bitcoin row of `/coins/markets` and the whole `/global` body. Other coins are derived from the
bitcoin row (same fields, their own id, symbol, price and rank). As the real API does, the
`price_change_percentage_<p>_in_currency` fields appear only when `price_change_percentage` asks
for them, unknown ids are simply absent, and keys are checked per host: `host="public"` accepts
no key or a Demo key (`x-cg-demo-api-key`) and refuses a Pro key (error 10010); `host="pro"`
needs a Pro key (`x-cg-pro-api-key`) and refuses a Demo key (error 10011).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

from ._http_server import Fault, FakeHTTPServer, Recorded

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "coingecko"

# id, symbol, name, price, rank, circulating supply, 1h %, 24h %, 7d %
DERIVED_COINS = [
    ("ethereum", "eth", "Ethereum", 3571.42, 2, 120_070_000.0, -0.183, 2.46143, 7.9021),
    ("solana", "sol", "Solana", 181.77, 5, 444_000_000.0, 0.412, 4.0121, 12.338),
    ("litecoin", "ltc", "Litecoin", 101.35, 18, 74_500_000.0, 0.051, 1.4402, 3.0187),
    ("ripple", "xrp", "XRP", 0.6211, 6, 55_000_000_000.0, -0.022, 0.8711, -1.201),
]
HOURLY_BTC, WEEKLY_BTC = 0.2107, 5.6613


def read_fixture(name: str) -> Any:
    """A JKorf fixture file: method, path and auth flag on the first three lines, then the JSON body."""
    text = (FIXTURES / name).read_text()
    return json.loads(text.split("\n", 3)[3])


def key_echo(header: str = "x-cg-demo-api-key") -> Fault:
    """A misbehaving proxy that puts the caller's key in its error body (the client must scrub it)."""
    return Fault(
        "key-echo", 401,
        lambda r: json.dumps({"status": {"error_code": 10002, "error_message": f"Invalid API key {r.headers.get(header, '')}"}}),
    )


class FakeCoinGecko(FakeHTTPServer):
    def __init__(self, host: Literal["public", "pro"] = "public", keys: tuple[str, ...] = (),
                 global_layout: Literal["data", "top"] = "data") -> None:
        super().__init__()
        self.host = host
        self.keys = set(keys)  # accepted keys (any key accepted when empty)
        self.global_layout = global_layout
        self.coins = self._coins()
        self.global_body = read_fixture("jkorf_GetGlobalData.txt")

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/v3"

    @staticmethod
    def _coins() -> dict[str, dict[str, Any]]:
        bitcoin = read_fixture("jkorf_GetMarkets.txt")[0]
        coins = {"bitcoin": bitcoin}
        for coin_id, symbol, name, price, rank, supply, _, change_24h, _ in DERIVED_COINS:
            ratio = price / bitcoin["current_price"]
            row = copy.deepcopy(bitcoin)
            row.update({
                "id": coin_id, "symbol": symbol, "name": name, "current_price": price,
                "market_cap": round(price * supply), "market_cap_rank": rank, "fully_diluted_valuation": None,
                "total_volume": round(bitcoin["total_volume"] * ratio * 40), "high_24h": round(bitcoin["high_24h"] * ratio, 4),
                "low_24h": round(bitcoin["low_24h"] * ratio, 4), "price_change_24h": round(price * change_24h / 100, 4),
                "price_change_percentage_24h": change_24h, "circulating_supply": supply, "total_supply": None,
                "max_supply": None, "ath": round(bitcoin["ath"] * ratio, 4), "atl": round(bitcoin["atl"] * ratio, 6),
            })
            coins[coin_id] = row
        return coins

    def _changes(self, coin_id: str) -> dict[str, float]:
        if coin_id == "bitcoin":
            row = self.coins["bitcoin"]
            return {"1h": HOURLY_BTC, "24h": row["price_change_percentage_24h"], "7d": WEEKLY_BTC}
        for derived in DERIVED_COINS:
            if derived[0] == coin_id:
                return {"1h": derived[6], "24h": derived[7], "7d": derived[8]}
        return {}

    def _auth_error(self, headers: dict[str, str]) -> tuple[int, Any] | None:
        demo, pro = headers.get("x-cg-demo-api-key"), headers.get("x-cg-pro-api-key")
        if self.host == "public":
            if pro:
                return 400, {"status": {"error_code": 10010, "error_message": "If you are using Pro API key, please change your root URL from api.coingecko.com to pro-api.coingecko.com"}}
            if demo and self.keys and demo not in self.keys:
                return 401, {"status": {"error_code": 10002, "error_message": "Invalid API Key"}}
            return None
        if demo:
            return 400, {"status": {"error_code": 10011, "error_message": "If you are using Demo API key, please change your root URL from pro-api.coingecko.com to api.coingecko.com"}}
        if not pro:
            return 401, {"status": {"error_code": 10002, "error_message": "API Key Missing"}}
        if self.keys and pro not in self.keys:
            return 401, {"status": {"error_code": 10002, "error_message": "Invalid API Key"}}
        return None

    def route(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        refused = self._auth_error(request.headers)
        if refused is not None:
            return refused[0], refused[1], {}
        path = request.path.rstrip("/")
        if path == "/api/v3/ping":
            return 200, {"gecko_says": "(V3) To the Moon!"}, {}
        if path == "/api/v3/global":
            body = self.global_body if self.global_layout == "data" else self.global_body["data"]
            return 200, body, {}
        if path == "/api/v3/coins/markets":
            return self._markets(request.query)
        return 404, {"error": "Incorrect path. Please check https://www.coingecko.com/api/documentation"}, {}

    def _markets(self, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if "vs_currency" not in query:
            return 400, {"error": "Missing parameter vs_currency"}, {}
        wanted = [i for i in query.get("ids", "").split(",") if i]
        per_page = int(query.get("per_page", "100"))
        periods = [p for p in query.get("price_change_percentage", "").split(",") if p]
        rows = []
        for coin_id in (wanted or list(self.coins)):
            if coin_id not in self.coins:
                continue  # the real API leaves unknown ids out
            row = copy.deepcopy(self.coins[coin_id])
            changes = self._changes(coin_id)
            for period in periods:
                row[f"price_change_percentage_{period}_in_currency"] = changes.get(period)
            rows.append(row)
        rows.sort(key=lambda r: r["market_cap_rank"] or 10**9)
        return 200, rows[:per_page], {}
