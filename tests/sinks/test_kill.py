"""`kill -9` at random moments: the database stays intact and holds every signal the log reported stored.

Two `v7 run` processes write the same database at once (same config, so they race for the same
bars) and each is killed with SIGKILL again and again: during start-up, while the v1 database is
migrated, and while signals are written. The engine logs "signal stored" only after the sink's
COMMIT returned, so each such line must match a row. Reproduce a failure with V7_KILL_SEED=<seed>.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from factory import FAST_THEORIES, write_config
from helpers import REPO
from v7.plugins.sinks.sqlite import SCHEMA_VERSION

KILLS = 20
CHAINS = 2  # processes writing the same database at the same time
BUDGET_S = 45  # no new run starts after this: on a loaded machine fewer kills, not a slow suite
MIN_KILLS = 10
FIXTURE_V1 = Path(__file__).with_name("schema_v1.sql")


def utc_seconds(iso_time: str) -> str:
    return iso_time.replace("+00:00", "Z")


def run_and_kill(folder: Path, config: str, rng: random.Random, deadline: float) -> dict:
    """Start `v7 run`, SIGKILL it at a random moment, return what its log said."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "v7.core.cli", "--log-json", "run", "--config", config],
        cwd=folder, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    lines: list[str] = []
    writing = threading.Event()

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if '"signal stored"' in line:  # new rows going in (bars another run stored do not count)
                writing.set()
        writing.set()  # the process ended (it should not: the test then fails on its exit code)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if rng.random() < 0.3:
        phase = "start-up"  # imports, config, opening (and maybe migrating) the database
        time.sleep(rng.uniform(0.0, 1.0))
    else:
        phase = "writing"
        writing.wait(timeout=max(1.0, deadline - time.monotonic()))
        time.sleep(rng.uniform(0.0, 0.4))
    process.kill()
    process.wait(timeout=30)
    reader.join(timeout=30)
    stored = []
    for line in lines:
        if '"signal stored"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:  # a line cut by the kill: not counted, which only makes the check weaker
            continue
        stored.append((event["symbol"], utc_seconds(event["bar_time"])))
    return {"phase": phase, "stored": stored, "exited": process.returncode, "tail": lines[-5:]}


def test_sigkill_at_random_moments_keeps_every_reported_signal(tmp_path):
    started = time.monotonic()
    seed = int(os.environ.get("V7_KILL_SEED", random.randrange(1 << 30)))
    print(f"V7_KILL_SEED={seed}")
    # 3,000 bars (2017-07-01 to 2017-11-03) and a short lookback: start-up stays short.
    candles = tmp_path / "candles"
    candles.mkdir()
    for symbol in ("BTC-USD", "ETH-USD"):
        rows = (REPO / "data" / "candles" / f"{symbol}.csv").read_text().splitlines()[:3001]
        (candles / f"{symbol}.csv").write_text("\n".join(rows) + "\n")
    # Runs start their replay at one of a few bars: most of what a run writes is new, and runs
    # that share a start (and so a config hash) race for the same bars.
    base = write_config(tmp_path, theories=FAST_THEORIES).read_text().replace("lookback = 1000", "lookback = 100")
    configs = []
    for index, day in enumerate(("2017-07-06", "2017-07-20", "2017-08-03", "2017-08-17", "2017-08-31", "2017-09-14")):
        name = f"config{index}.toml"
        (tmp_path / name).write_text(base.replace("[feeds.replay]\n", f'[feeds.replay]\npath = "candles"\nstart = {day}T00:00:00Z\n'))
        configs.append(name)
    db_path = tmp_path / "v7.db"
    sqlite3.connect(db_path).executescript(FIXTURE_V1.read_text())  # the first runs migrate it

    outcomes: list[dict] = []
    problems: list[str] = []

    def chain(index: int) -> None:
        rng = random.Random(seed + index)
        for _ in range(KILLS // CHAINS):
            if time.monotonic() > started + BUDGET_S:
                break
            outcome = run_and_kill(tmp_path, rng.choice(configs), rng, started + BUDGET_S + 5)
            outcomes.append(outcome)
            check = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
            try:
                result = check.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                check.close()
            if result != "ok":
                problems.append(f"integrity_check after a kill: {result}")

    threads = [threading.Thread(target=chain, args=(i,)) for i in range(CHAINS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert problems == []
    assert len(outcomes) >= MIN_KILLS
    # A run that ended on its own says why in its last log lines.
    assert all(o["exited"] == -9 for o in outcomes), [(o["exited"], o["tail"]) for o in outcomes if o["exited"] != -9]
    reported = {key for o in outcomes for key in o["stored"]}
    assert sum(1 for o in outcomes if o["phase"] == "writing" and o["stored"]) >= 5, "too few kills while writing"

    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    stored = {(r[0], r[1]) for r in db.execute("SELECT symbol, bar_time FROM signals WHERE run_id != 'a1b2c3d4e5f6'")}
    print(f"{len(outcomes)} kills in {time.monotonic() - started:.0f} s, {len(reported)} signals reported stored, {len(stored)} in the database")
    missing = reported - stored
    assert not missing, f"reported stored but not in the database: {sorted(missing)[:5]} (seed {seed})"
    # Each signal whole (one Kalman result each), none twice, the v1 rows untouched.
    assert db.execute(
        "SELECT count(*) FROM signals s WHERE s.run_id != 'a1b2c3d4e5f6' "
        "AND (SELECT count(*) FROM theory_results t WHERE t.signal_id = s.id) != 1"
    ).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM (SELECT 1 FROM signals GROUP BY symbol, granularity, bar_time, config_hash HAVING count(*) > 1)").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM signals WHERE run_id = 'a1b2c3d4e5f6'").fetchone()[0] == 3
    assert db.execute(
        "SELECT count(*) FROM theory_results t JOIN signals s ON s.id = t.signal_id WHERE s.run_id = 'a1b2c3d4e5f6'"
    ).fetchone()[0] == 6
    # Killed runs have no stop time; nothing else is needed to open the database again.
    assert db.execute("SELECT count(*) FROM runs WHERE stopped_at IS NULL").fetchone()[0] >= 1
    db.close()
