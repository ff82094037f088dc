"""Rule-based consensus: a signal from the theory results alone, offline, and the LLM's fallback.

The rule, in order:
1. Direction score: the weighted mean of `bias × confidence` over the directional theories that
   answered `ok` (the regime theory excluded: it decides how the move is read, step 2). Weights
   per theory in config; third-party directional theories take part with `default_weight`.
2. Regime (Hurst) re-reads the momentum theories (`momentum_theories`, default the Kalman
   filter): `trending` follows their move (× `trend_follow`), `mean_reverting` fades it
   (× −`mean_reversion_fade`), `random_walk` damps it (× `random_walk_damping`). Other
   directional theories (a contrarian RSI, say) already state the direction they mean and enter as is.
3. Predictability (entropy): above `entropy_floor`, confidence shrinks linearly to
   `1 − entropy_penalty` at entropy 1 (a market that looks random earns less trust).
4. BUY when the score ≥ `buy_threshold`, SELL when ≤ −`sell_threshold`, HOLD otherwise; the
   confidence of a trade is |score| (capped at 1) × the entropy trust, of a HOLD how deep the
   score sits inside the no-trade band × the trust.
5. Risk veto: a `monte_carlo` label in `veto_labels`, or VaR above `max_var`, turns a BUY or
   SELL into HOLD, with the risk theory's confidence.
No directional theory answered → HOLD with confidence 0.

Calibration of the defaults (`benchmarks/signal_mix.py`, bundled BTC and ETH hourly history,
five built-in theories, lookback 1,000): the score is mostly the Kalman filter's bias ×
confidence damped ×0.8 in a random-walk regime, so a threshold of 0.10 trades from about
|velocity_z| ≈ 1, Kalman's own `up`/`down` boundary; that gives about 17 % BUY, 18 % SELL and
65 % HOLD. Permutation entropy of i.i.d. returns reads ≈ 0.988 at 1,000 bars and the history
spans 0.981–0.991, so `entropy_floor` is 0.97: with 0.9 every signal was scaled by the same ~0.58.
"""

from __future__ import annotations

from pydantic import Field

from v7 import PluginConfig, Synthesis, SynthesisBatch, SynthesisColumns, SynthesisRequest, Synthesizer, TheoryResult, hookimpl


class ConsensusConfig(PluginConfig):
    buy_threshold: float = Field(default=0.10, ge=0, le=1)
    sell_threshold: float = Field(default=0.10, ge=0, le=1)
    weights: dict[str, float] = Field(default_factory=lambda: {"kalman_filter": 1.0, "markov_regime": 0.5})
    default_weight: float = Field(default=1.0, ge=0, description="Weight of directional theories not in `weights`")
    regime_theory: str = "hurst_exponent"
    momentum_theories: list[str] = Field(
        default_factory=lambda: ["kalman_filter"], description="Directional theories whose move the regime follows or fades"
    )
    trend_follow: float = Field(default=1.25, ge=0)
    mean_reversion_fade: float = Field(default=0.75, ge=0)
    random_walk_damping: float = Field(default=0.8, ge=0)
    entropy_theory: str = "shannon_entropy"
    entropy_floor: float = Field(default=0.97, ge=0, lt=1, description="Entropy above which confidence shrinks")
    entropy_penalty: float = Field(default=0.5, ge=0, le=1)
    risk_theory: str = "monte_carlo"
    veto_labels: list[str] = Field(default_factory=lambda: ["extreme"])
    max_var: float | None = Field(default=None, gt=0, description="Veto when VaR (fraction) exceeds this")


class ConsensusSynthesizer(Synthesizer):
    name = "consensus"
    version = "1.2"
    offline = True  # no network, no key: the default synthesizer and the fallback of any other
    confidence_meaning = (
        "BUY/SELL: the strength of the weighted theory score, |score| capped at 1, times the entropy trust; "
        "HOLD: how deep the score sits inside the no-trade band, a different scale; neither is a probability"
    )
    Config = ConsensusConfig

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        cfg: ConsensusConfig = self.config
        by_name: dict[str, TheoryResult] = {r.theory: r for r in request.results if r.ok}
        notes: list[str] = []

        regime = by_name.get(cfg.regime_theory)
        factor = 1.0
        if regime is not None:
            factor = {
                "trending": cfg.trend_follow,
                "mean_reverting": -cfg.mean_reversion_fade,
            }.get(regime.label, cfg.random_walk_damping)

        total_weight = 0.0
        score = 0.0
        for result in by_name.values():
            if result.bias is None or result.theory == cfg.regime_theory:
                continue
            weight = cfg.weights.get(result.theory, cfg.default_weight)
            reading = factor if result.theory in cfg.momentum_theories else 1.0
            total_weight += weight
            score += weight * result.bias * result.confidence * reading
        if total_weight == 0:
            return Synthesis(direction="HOLD", confidence=0.0, reasoning="No directional theory answered; holding.",
                             decided_by="no directional theory")
        score /= total_weight
        notes.append(f"directional score {score:+.3f}")
        if regime is not None:
            notes.append(f"{regime.label} regime ×{factor:+.2f} on momentum")

        trust = 1.0
        entropy_result = by_name.get(cfg.entropy_theory)
        entropy = entropy_result.metrics.get("entropy") if entropy_result else None
        if entropy is not None and entropy > cfg.entropy_floor:
            trust = 1.0 - cfg.entropy_penalty * (entropy - cfg.entropy_floor) / (1.0 - cfg.entropy_floor)
            notes.append(f"entropy {entropy:.3f} scales confidence ×{trust:.2f}")

        direction, decided_by = "HOLD", "no-trade band"
        if score >= cfg.buy_threshold:
            direction, decided_by = "BUY", "buy threshold"
        elif score <= -cfg.sell_threshold:
            direction, decided_by = "SELL", "sell threshold"

        vetoed_by: TheoryResult | None = None
        risk = by_name.get(cfg.risk_theory)
        if risk is not None and direction != "HOLD":
            var = risk.metrics.get("var")
            if risk.label in cfg.veto_labels or (cfg.max_var is not None and var is not None and var > cfg.max_var):
                shown = f"VaR {var:.2%}" if var is not None else "VaR n/a"
                notes.append(f"{direction} vetoed by {risk.label} risk ({shown})")
                direction, decided_by = "HOLD", "risk veto"
                vetoed_by = risk

        confidence = min(1.0, abs(score)) * trust
        if vetoed_by is not None:
            confidence = vetoed_by.confidence
        elif direction == "HOLD":
            threshold = cfg.buy_threshold if score >= 0 else cfg.sell_threshold
            # Confidence in HOLD: how far the score sits inside the no-trade band.
            confidence = (1.0 - min(1.0, abs(score) / threshold)) * trust if threshold > 0 else 0.0
        failed = [r.theory for r in request.results if not r.ok]
        if failed:
            notes.append(f"without {', '.join(failed)}")
        return Synthesis(direction=direction, confidence=round(confidence, 6), reasoning="; ".join(notes) + ".", decided_by=decided_by)

    def synthesize_batch(self, batch: SynthesisBatch) -> SynthesisColumns:
        """The rule of `synthesize` over a chunk's arrays, equal to the bit (every operation is the
        same IEEE one, elementwise), read from the batch's theory columns. Floating-point warnings
        are silenced: an overflow gives NaN confidences, which V7 refuses, and the chunk then goes
        bar by bar."""
        import numpy as np

        with np.errstate(all="ignore"):
            return self._columns(batch)

    def _columns(self, batch: SynthesisBatch) -> SynthesisColumns:
        import numpy as np

        cfg: ConsensusConfig = self.config
        n = len(batch)
        columns = {c.theory: c for c in batch.theories}
        order = list(columns)
        ok = {name: c.ok for name, c in columns.items()}
        nowhere = np.zeros(n, dtype=bool)

        regime = ok.get(cfg.regime_theory, nowhere)
        factor = np.ones(n)
        if cfg.regime_theory in columns:
            reading = {"trending": cfg.trend_follow, "mean_reverting": -cfg.mean_reversion_fade}
            labels = columns[cfg.regime_theory].label
            factor = np.where(regime, np.array([reading.get(label, cfg.random_walk_damping) for label in labels], dtype=np.float64), 1.0)
        score, total = np.zeros(n), np.zeros(n)
        for name in order:
            if name == cfg.regime_theory:
                continue
            bias = columns[name].bias  # NaN where the result has no bias
            active = ok[name] & ~np.isnan(bias)
            weight = cfg.weights.get(name, cfg.default_weight)
            term = weight * bias * columns[name].confidence
            if name in cfg.momentum_theories:
                term = term * factor
            total = total + np.where(active, weight, 0.0)
            score = score + np.where(active, term, 0.0)
        undirected = total == 0
        score = np.where(undirected, 0.0, score / np.where(undirected, 1.0, total))

        trust, entropy, shrinks = np.ones(n), np.full(n, np.nan), nowhere
        if cfg.entropy_theory in columns:
            entropy = columns[cfg.entropy_theory].metric("entropy")
            shrinks = ok[cfg.entropy_theory] & (entropy > cfg.entropy_floor)
            trust = np.where(shrinks, 1.0 - cfg.entropy_penalty * (entropy - cfg.entropy_floor) / (1.0 - cfg.entropy_floor), 1.0)

        buy = score >= cfg.buy_threshold
        sell = ~buy & (score <= -cfg.sell_threshold)
        veto, var, has_var, risk_confidence = nowhere, np.full(n, np.nan), nowhere, np.zeros(n)
        if cfg.risk_theory in columns:
            risk = columns[cfg.risk_theory]
            var, has_var = risk.metric("var"), risk.has_metric("var")
            labelled = np.array([label in cfg.veto_labels for label in risk.label], dtype=bool)
            too_risky = var > cfg.max_var if cfg.max_var is not None else nowhere
            veto = ok[cfg.risk_theory] & (buy | sell) & ~undirected & (labelled | too_risky)
            risk_confidence = risk.confidence

        trade = np.minimum(1.0, np.abs(score)) * trust
        threshold = np.where(score >= 0, cfg.buy_threshold, cfg.sell_threshold)
        hold = np.where(threshold > 0, (1.0 - np.minimum(1.0, np.abs(score) / threshold)) * trust, 0.0)
        confidence = np.where(undirected, 0.0, np.where(veto, risk_confidence, np.where(buy | sell, trade, hold)))

        # Each bar's case, in the order the rule decides: 0 no directional theory, 1 vetoed, 2 BUY, 3 SELL, 4 the band.
        case = np.select([undirected, veto, buy, sell], [0, 1, 2, 3], 4).tolist()
        directions = [("HOLD", "HOLD", "BUY", "SELL", "HOLD")[c] for c in case]
        rules = [("no directional theory", "risk veto", "buy threshold", "sell threshold", "no-trade band")[c] for c in case]
        reasons: list[str] = []
        if batch.reasoning:
            regime_labels = columns[cfg.regime_theory].label if cfg.regime_theory in columns else [""] * n
            risk_labels = columns[cfg.risk_theory].label if cfg.risk_theory in columns else [""] * n
            failing = [(name, ~ok[name]) for name in order]
            for i in range(n):
                if undirected[i]:
                    reasons.append("No directional theory answered; holding.")
                    continue
                notes = [f"directional score {score[i]:+.3f}"]
                if regime[i]:
                    notes.append(f"{regime_labels[i]} regime ×{factor[i]:+.2f} on momentum")
                if shrinks[i]:
                    notes.append(f"entropy {entropy[i]:.3f} scales confidence ×{trust[i]:.2f}")
                if veto[i]:
                    shown = f"VaR {var[i]:.2%}" if has_var[i] else "VaR n/a"
                    notes.append(f"{'BUY' if buy[i] else 'SELL'} vetoed by {risk_labels[i]} risk ({shown})")
                failed = [name for name, bad in failing if bad[i]]
                if failed:
                    notes.append(f"without {', '.join(failed)}")
                reasons.append("; ".join(notes) + ".")
        return SynthesisColumns(direction=directions, confidence=[round(c, 6) for c in confidence.tolist()], decided_by=rules, reasoning=reasons)


@hookimpl
def register_synthesizers(register):
    register(ConsensusSynthesizer)
