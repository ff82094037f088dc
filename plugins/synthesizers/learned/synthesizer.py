"""The `learned` synthesizer: walk-forward per symbol, a calibrated P(up), BUY / SELL / HOLD by threshold."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from v7 import GRANULARITY_SECONDS, Synthesis, SynthesisFailed, SynthesisRequest, Synthesizer, format_utc

from .config import LearnedConfig
from .features import MissingFeature, bar_features
from .learner import SymbolLearner
from .modelfile import load, save


def training_threads(configured: int | None) -> int:
    """One thread unless `threads` says more, and never more than the engine's cap (its OMP_NUM_THREADS).

    GNU OpenMP, which LightGBM uses, is not fork-safe: once it has started a thread pool, a process
    forked from this one (a backtest's workers, in a Python session that trained before) hangs at
    its first parallel region. One thread never starts the pool; 20,000 rows still train in ~2 s.
    """
    cap = os.environ.get("OMP_NUM_THREADS", "")
    limit = int(cap) if cap.isdigit() and int(cap) > 0 else None
    wanted = configured or 1
    return min(wanted, limit) if limit else wanted


class LearnedSynthesizer(Synthesizer):
    name = "learned"
    version = "1.0"
    learns = True
    calibrated = True
    confidence_meaning = (
        "BUY/SELL: the calibrated probability (isotonic or Platt, fitted on the newest slice of each training window) that the "
        "close `horizon` bars later is on the named side; HOLD: the probability of the likelier side, below `threshold`: the same scale"
    )
    Config = LearnedConfig

    def __init__(self, config: LearnedConfig | None = None) -> None:
        super().__init__(config)
        cfg: LearnedConfig = self.config
        self._learners: dict[str, SymbolLearner] = {}
        self._details: dict[str, Any] | None = None
        self._saved: dict[str, Any] = {}
        if cfg.model_path:
            self._details, self._saved = load(Path(cfg.model_path).expanduser(), cfg)

    # -- answering ----------------------------------------------------------------------------

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        cfg: LearnedConfig = self.config
        learner = self._learner(request.symbol, request.granularity)
        candles = request.candles
        bar = int(candles.timestamp[-1]) if candles is not None and len(candles) else int(request.bar_time.timestamp())
        learner.check_loaded(bar, request.symbol)
        try:
            features = bar_features(request, cfg)
            problem = None
        except MissingFeature as exc:
            features, problem = None, f"feature missing: {exc}"
        if candles is not None and len(candles):
            learner.show(int(candles.timestamp[-1]), float(candles.close[-1]), features, candles.timestamp, candles.close)
        if problem is not None:
            raise SynthesisFailed(problem)
        model = learner.model
        aside = f"{learner.set_aside}; " if learner.set_aside else ""
        if model is None:
            # Collecting the first rows is the expected state of a new learner, not a failure worth a warning per bar.
            raise SynthesisFailed(aside + (learner.last_problem or f"no model for {request.symbol} yet"), quiet=learner.warming_up)
        start = learner.answers_from()
        if start is not None and start > bar:
            # Never an answer from outcomes not known an embargo before the bar (a loaded model trained past it; logged once).
            raise SynthesisFailed(learner.set_aside or (
                f"the model learned from outcomes up to {format_utc(model.last_label_time)}: it may answer from {format_utc(start)}, "
                f"not bar {format_utc(bar)}"), quiet=True)
        x = learner.table.vector(features or {}, model.names)
        if cfg.explain:
            p_up, pushes = model.explain(x)
        else:
            p_up, pushes = float(model.probability(x.reshape(1, -1))[0]), None
        if p_up >= cfg.threshold:
            direction, confidence, rule = "BUY", p_up, "P(up) ≥ threshold"
        elif p_up <= 1 - cfg.threshold:
            direction, confidence, rule = "SELL", 1 - p_up, "P(up) ≤ 1 − threshold"
        else:
            direction, confidence, rule = "HOLD", max(p_up, 1 - p_up), "P(up) inside the threshold band"
        return Synthesis(
            direction=direction, confidence=confidence, reasoning=self._reasoning(model, pushes, p_up), decided_by=rule,
            learned_until=datetime.fromtimestamp(model.last_label_time, timezone.utc),
            payoff={"BUY": model.payoff_buy, "SELL": model.payoff_sell}.get(direction),
        )

    def _reasoning(self, model: Any, pushes: Any, p_up: float) -> str:
        cfg: LearnedConfig = self.config
        ranks = "" if cfg.target == "sign" else f" ranking returns above their {cfg.target_quantile:g} quantile ({model.threshold_return:+.4f})"
        text = (
            f"P(up over {cfg.horizon} bars) = {p_up:.3f} ({model.kind}{ranks}, {model.calibration.method} calibration on "
            f"{model.calibration.rows:,} bars; trained on {model.trained_rows:,} bars to {format_utc(model.last_time)}, base rate {model.base_rate:.3f})"
        )
        if pushes is not None:
            order = sorted(range(len(pushes)), key=lambda i: -abs(pushes[i]))[: cfg.explain]
            named = ", ".join(f"{model.names[i]} {pushes[i]:+.3f}" for i in order if pushes[i] != 0)
            text += f". Moved most by (log-odds): {named}" if named else ". No feature moved it: the model found no split worth making"
        return text

    def _learner(self, symbol: str, granularity: str) -> SymbolLearner:
        learner = self._learners.get(symbol)
        if learner is None:
            cfg: LearnedConfig = self.config
            table, model = self._saved.get(symbol, (None, None))
            threads = training_threads(cfg.threads)
            learner = SymbolLearner(cfg, int(GRANULARITY_SECONDS.get(granularity, 3600)), threads, table, model, learn=cfg.retrain_live or not cfg.model_path)
            self._learners[symbol] = learner
        return learner

    # -- optional capabilities ----------------------------------------------------------------

    def importances(self) -> dict[str, dict[str, float]]:
        return {s: dict(sorted(l.model.importances.items(), key=lambda kv: -kv[1])) for s, l in self._learners.items() if l.model is not None}

    def model_details(self) -> dict[str, Any] | None:
        return self._details

    def save_model(self, path: Path, details: dict[str, Any]) -> None:
        """Retrain each symbol on every row known by its last bar (the freshest model), then write the file."""
        for learner in self._learners.values():
            if learner.table.rows:
                learner.shown_since_training = learner.shown_since_training or 0
                learner._train(int(learner.table.times[learner.table.rows - 1]))
        from importlib.metadata import PackageNotFoundError, version

        libraries = {}
        for package in ("lightgbm", "scikit-learn", "numpy"):
            try:
                libraries[package] = version(package)
            except PackageNotFoundError:
                libraries[package] = None
        save(Path(path), self.config, self._learners, {**details, "libraries": libraries})
