"""DeepSeek's SQLite file: the response cache (a repeated request answered without a call) and the daily budget.

One file, opened on first use and created readable by its owner only (0600, as are its -wal and
-shm companions), holds two tables: `llm_responses` (model, request hash, the answer
and the usage of the original call) and `llm_daily_usage` (per UTC day: requests, tokens, cost).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from v7 import Synthesis, TokenUsage, create_private, format_utc

if TYPE_CHECKING:  # pragma: no cover
    from . import DeepSeekConfig

CACHE_FORMAT = "v1"  # part of the cache key: bump when the request or answer shape changes

SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_responses (
    model TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('BUY', 'SELL', 'HOLD')),
    confidence REAL NOT NULL,
    reasoning TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cache_hit_tokens INTEGER NOT NULL,
    cache_miss_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model, request_hash)
);
CREATE TABLE IF NOT EXISTS llm_daily_usage (
    day TEXT PRIMARY KEY,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0
);
"""


def request_hash(config: "DeepSeekConfig", messages: list[dict[str, str]]) -> str:
    """Everything that shapes the answer, hashed; the API key and base URL are not part of it."""
    material: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "model": config.model,
        "messages": messages,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "response_format": "json_object",
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def today() -> str:
    """The current UTC day, the key of the daily usage."""
    return datetime.now(timezone.utc).date().isoformat()


class ResponseStore:
    """The response cache and the daily usage of one synthesizer, thread-safe."""

    def __init__(self, config: "DeepSeekConfig") -> None:
        self.config = config
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @property
    def budgeted(self) -> bool:
        return self.config.daily_token_budget is not None or self.config.daily_cost_budget is not None

    def _storage(self) -> sqlite3.Connection | None:
        """The SQLite file, opened on first use; None when neither cache nor budget needs it."""
        if not (self.config.cache_enabled or self.budgeted):
            return None
        if self._db is None:
            path = Path(self.config.cache_path)
            if path.parent and not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            create_private(path)  # the model's answers and reasoning: owner only; SQLite gives -wal/-shm the same mode
            db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    # -- the response cache ----------------------------------------------------------------

    def cached(self, key: str) -> Synthesis | None:
        """The stored answer to the request hashed as `key`, or None (also when the cache is off)."""
        if not self.config.cache_enabled:
            return None
        with self._lock:
            db = self._storage()
            assert db is not None
            row = db.execute(
                "SELECT direction, confidence, reasoning FROM llm_responses WHERE model = ? AND request_hash = ?",
                (self.config.model, key),
            ).fetchone()
        if row is None:
            return None
        # A cache hit sends no request: 0 attempts and zero usage mark it in the stored signal.
        return Synthesis(direction=row[0], confidence=row[1], reasoning=row[2], attempts=0, usage=TokenUsage())

    def remember(self, key: str, answer: Synthesis) -> None:
        if not self.config.cache_enabled:
            return
        usage = answer.usage or TokenUsage()
        with self._lock:
            db = self._storage()
            assert db is not None
            db.execute(
                """INSERT OR REPLACE INTO llm_responses (model, request_hash, direction, confidence, reasoning, attempts,
                   prompt_tokens, completion_tokens, cache_hit_tokens, cache_miss_tokens, cost, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    self.config.model, key, answer.direction, answer.confidence, answer.reasoning, answer.attempts,
                    usage.prompt_tokens, usage.completion_tokens, usage.cache_hit_tokens, usage.cache_miss_tokens,
                    usage.cost, format_utc(datetime.now(timezone.utc)),
                ),
            )

    # -- the daily budget ------------------------------------------------------------------

    def record_spend(self, usage: TokenUsage | None) -> None:
        """Count one request's tokens and cost towards today's budget (kept even without a budget)."""
        with self._lock:
            db = self._storage()
            if db is None:
                return
            usage = usage or TokenUsage()
            db.execute(
                """INSERT INTO llm_daily_usage (day, requests, prompt_tokens, completion_tokens, cost) VALUES (?, 1, ?, ?, ?)
                   ON CONFLICT (day) DO UPDATE SET requests = requests + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                   completion_tokens = completion_tokens + excluded.completion_tokens, cost = cost + excluded.cost""",
                (today(), usage.prompt_tokens, usage.completion_tokens, usage.cost),
            )

    def spent_today(self) -> tuple[int, float]:
        """(tokens, USD) spent today (UTC) according to the usage table."""
        with self._lock:
            db = self._storage()
            if db is None:
                return 0, 0.0
            row = db.execute("SELECT prompt_tokens + completion_tokens, cost FROM llm_daily_usage WHERE day = ?", (today(),)).fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def budget_exhausted(self) -> str | None:
        """Why no further request may be sent today, or None while within both budgets."""
        cfg = self.config
        if not self.budgeted:
            return None
        tokens, cost = self.spent_today()
        day = today()
        if cfg.daily_cost_budget is not None and cost >= cfg.daily_cost_budget:
            return f"daily cost budget of {cfg.daily_cost_budget:g} USD reached (spent {cost:.6f} USD on {day} UTC)"
        if cfg.daily_token_budget is not None and tokens >= cfg.daily_token_budget:
            return f"daily token budget of {cfg.daily_token_budget} tokens reached (used {tokens} tokens on {day} UTC)"
        return None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
