-- V7 sqlite sink, schema version 3, frozen: the v2 fixture (schema_v2.sql) upgraded by the v3 migration
-- (plugins/sinks/sqlite/schema.py at commit ed49edb) plus two signals as the v3 sink writes them (position,
-- sizing; the second without timings), dumped with sqlite3's iterdump.
-- Never edit this file: the v4 migration is tested on it (tests/sinks/test_sqlite.py).
-- Six signals, nine theory results.
BEGIN TRANSACTION;
CREATE TABLE migrations (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL,
    v7_version TEXT
);
INSERT INTO "migrations" VALUES(2,'2025-02-01T12:00:00Z','0.1.0');
INSERT INTO "migrations" VALUES(3,'2025-06-01T12:00:00Z','0.1.0');
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    config_hash TEXT NOT NULL,
    config_path TEXT,
    v7_version TEXT NOT NULL,
    plugin_versions TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT
);
INSERT INTO "runs" VALUES('a1b2c3d4e5f6','0f1e2d3c4b5a6978','config.toml','0.1.0','{"feed:replay": "1.0", "sink:sqlite": "1.0", "synthesizer:consensus": "1.0", "theory:hurst_exponent": "1.0", "theory:monte_carlo": "1.0"}','2025-01-06T09:00:00Z','2025-01-06T10:05:00Z');
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO "schema_version" VALUES(3);
CREATE TABLE signals (
    id INTEGER PRIMARY KEY,
    run_id TEXT,
    symbol TEXT NOT NULL,
    granularity TEXT NOT NULL,
    bar_time TEXT NOT NULL,
    created_at TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('BUY', 'SELL', 'HOLD')),
    confidence REAL NOT NULL,
    price REAL NOT NULL,
    synthesizer TEXT NOT NULL,
    fallback_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    reasoning TEXT,
    config_hash TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cache_hit_tokens INTEGER,
    cache_miss_tokens INTEGER,
    cost REAL,
    context TEXT,
    context_error TEXT,
    prompt TEXT,
    timings TEXT, sink_ms REAL, stored_at TEXT, position REAL NOT NULL DEFAULT 0, sizing TEXT,
    UNIQUE (symbol, granularity, bar_time, config_hash)
);
INSERT INTO "signals" VALUES(1,'a1b2c3d4e5f6','BTC-USD','1h','2025-01-06T08:00:00Z','2025-01-06T09:00:04Z','BUY',0.62,101234.5,'consensus',NULL,1,'Trending (H 0.61) with upside skew.','0f1e2d3c4b5a6978',NULL,NULL,NULL,NULL,NULL,NULL,NULL,'## hurst_exponent
H = 0.61','{"feed": 12.5, "formatters": 0.3, "synthesizer": 0.2, "theories": 8.1}',NULL,NULL,0.0,NULL);
INSERT INTO "signals" VALUES(2,'a1b2c3d4e5f6','ETH-USD','1h','2025-01-06T08:00:00Z','2025-01-06T09:00:05Z','HOLD',0.3,3650.25,'consensus','deepseek: timed out after 3 attempts',3,'No consensus.','0f1e2d3c4b5a6978',1800,0,1200,600,0.00042,NULL,'coingecko: HTTP 429',NULL,'{"feed": 10.0, "formatters": 0.4, "synthesizer": 30012.0, "theories": 5.5}',NULL,NULL,0.0,NULL);
INSERT INTO "signals" VALUES(3,'a1b2c3d4e5f6','BTC-USD','1h','2025-01-06T09:00:00Z','2025-01-06T10:00:03Z','SELL',0.55,100980.0,'deepseek',NULL,1,'Momentum fading; paths skew down.','0f1e2d3c4b5a6978',1750,180,1536,214,0.00031,NULL,NULL,NULL,'{"feed": 11.0, "formatters": 0.5, "synthesizer": 2210.0, "theories": 7.9}',NULL,NULL,0.0,NULL);
INSERT INTO "signals" VALUES(4,'a1b2c3d4e5f6','ETH-USD','1h','2025-01-06T09:00:00Z','2025-01-06T10:00:04Z','BUY',0.58,3661.0,'consensus',NULL,1,'Kalman trend up.','0f1e2d3c4b5a6978',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'{"feed": 10.5, "formatters": 0.3, "synthesizer": 0.2, "theories": 6.0}',1.75,'2025-01-06T10:00:04Z',0.0,NULL);
INSERT INTO "signals" VALUES(5,'a1b2c3d4e5f6','ETH-USD','1h','2025-01-06T10:00:00Z','2025-01-06T11:00:03Z','SELL',0.66,3650.0,'consensus',NULL,1,'Kalman trend down.','0f1e2d3c4b5a6978',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'{"feed": 12.0, "formatters": 0.2, "synthesizer": 0.4, "theories": 3.3}',2.5,'2025-01-06T11:00:03Z',-0.125,'0.5 Kelly of p 0.66 → -0.125');
INSERT INTO "signals" VALUES(6,'a1b2c3d4e5f6','ETH-USD','1h','2025-01-06T11:00:00Z','2025-01-06T12:00:02Z','HOLD',0.2,3650.0,'consensus',NULL,1,'Kalman trend down.','0f1e2d3c4b5a6978',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'2025-01-06T11:00:03Z',0.0,'HOLD: flat');
CREATE TABLE theory_results (
    id INTEGER PRIMARY KEY,
    signal_id INTEGER NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    theory TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'insufficient_data', 'error')),
    bias REAL,
    confidence REAL NOT NULL,
    label TEXT,
    interpretation TEXT,
    message TEXT,
    metrics TEXT NOT NULL,
    elapsed_ms REAL NOT NULL,
    UNIQUE (signal_id, position)
);
INSERT INTO "theory_results" VALUES(1,1,0,'hurst_exponent','1.0','ok',0.4,0.7,'trending','H = 0.61 on 1000 bars.',NULL,'{"band_high": 0.56, "band_low": 0.44, "hurst": 0.61}',0.41);
INSERT INTO "theory_results" VALUES(2,1,1,'monte_carlo','1.0','ok',0.18,0.35,'upside skew','58% of 2000 paths end higher after 24 bars.',NULL,'{"expected_return_pct": 0.42, "p_up": 0.58}',3.2);
INSERT INTO "theory_results" VALUES(3,2,0,'hurst_exponent','1.0','ok',NULL,0.1,'random walk','H = 0.49 on 1000 bars.',NULL,'{"band_high": 0.56, "band_low": 0.44, "hurst": 0.49}',0.41);
INSERT INTO "theory_results" VALUES(4,2,1,'monte_carlo','1.0','error',NULL,0.0,'','ValueError: simulation diverged','ValueError: simulation diverged','{}',1.1);
INSERT INTO "theory_results" VALUES(5,3,0,'hurst_exponent','1.0','insufficient_data',NULL,0.0,'','Not enough history: 60 of 100 candles.','needs 100 candles, got 60','{}',0.0);
INSERT INTO "theory_results" VALUES(6,3,1,'monte_carlo','1.0','ok',0.18,0.35,'upside skew','58% of 2000 paths end higher after 24 bars.',NULL,'{"expected_return_pct": 0.42, "p_up": 0.58}',3.2);
INSERT INTO "theory_results" VALUES(7,4,0,'hurst_exponent','1.0','ok',0.3,0.7,'trending','H 0.58: trending.',NULL,'{"hurst": 0.58}',3.1);
INSERT INTO "theory_results" VALUES(8,5,0,'hurst_exponent','1.0','ok',-0.3,0.6,'trending','H 0.57: trending.',NULL,'{"hurst": 0.57}',2.9);
INSERT INTO "theory_results" VALUES(9,6,0,'hurst_exponent','1.0','error',NULL,0.0,'','ValueError: no data','ValueError: no data','{}',0.5);
CREATE INDEX signals_bar_time ON signals (bar_time);
CREATE INDEX signals_symbol_time ON signals (symbol, bar_time);
CREATE INDEX signals_direction ON signals (direction);
CREATE INDEX theory_results_theory ON theory_results (theory, status);
CREATE INDEX signals_created_at ON signals (created_at);
COMMIT;
