"""Rule-based consensus: a signal from the theory results alone, offline, and the LLM's fallback.

The rule, in order:
1. Direction score: the weighted mean of `bias × confidence` over the directional theories that
   answered `ok` (the regime theory excluded: it decides how the move is read, step 2). Weights
   per theory in config; third-party directional theories take part with `default_weight`.
2. Regime (Hurst): `trending` follows the move (score × `trend_follow`), `mean_reverting` fades
   it (score × −`mean_reversion_fade`), `random_walk` damps it (score × `random_walk_damping`).
3. Predictability (entropy): above `entropy_floor`, confidence shrinks linearly to
   `1 − entropy_penalty` at entropy 1 (a market that looks random earns less trust).
4. Risk veto: a `monte_carlo` label in `veto_labels`, or VaR above `max_var`, forces HOLD.
5. BUY when the score ≥ `buy_threshold`, SELL when ≤ −`sell_threshold`, HOLD otherwise.
"""

from __future__ import annotations

from pydantic import Field

from v7 import PluginConfig, Synthesis, SynthesisRequest, Synthesizer, TheoryResult, hookimpl


class ConsensusConfig(PluginConfig):
    buy_threshold: float = Field(default=0.10, ge=0, le=1)
    sell_threshold: float = Field(default=0.10, ge=0, le=1)
    weights: dict[str, float] = Field(default_factory=lambda: {"kalman_filter": 1.0, "markov_regime": 0.5})
    default_weight: float = Field(default=1.0, ge=0, description="Weight of directional theories not in `weights`")
    regime_theory: str = "hurst_exponent"
    trend_follow: float = Field(default=1.25, ge=0)
    mean_reversion_fade: float = Field(default=0.75, ge=0)
    random_walk_damping: float = Field(default=0.8, ge=0)
    entropy_theory: str = "shannon_entropy"
    entropy_floor: float = Field(default=0.9, ge=0, lt=1)
    entropy_penalty: float = Field(default=0.5, ge=0, le=1)
    risk_theory: str = "monte_carlo"
    veto_labels: list[str] = Field(default_factory=lambda: ["extreme"])
    max_var: float | None = Field(default=None, gt=0, description="Veto when VaR (fraction) exceeds this")


class ConsensusSynthesizer(Synthesizer):
    name = "consensus"
    version = "1.0"
    Config = ConsensusConfig

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        cfg: ConsensusConfig = self.config
        by_name: dict[str, TheoryResult] = {r.theory: r for r in request.results if r.ok}
        notes: list[str] = []

        total_weight = 0.0
        score = 0.0
        for result in by_name.values():
            if result.bias is None or result.theory == cfg.regime_theory:
                continue
            weight = cfg.weights.get(result.theory, cfg.default_weight)
            total_weight += weight
            score += weight * result.bias * result.confidence
        if total_weight == 0:
            return Synthesis(direction="HOLD", confidence=0.0, reasoning="No directional theory answered; holding.")
        score /= total_weight
        notes.append(f"directional score {score:+.3f}")

        regime = by_name.get(cfg.regime_theory)
        if regime is not None:
            factor = {
                "trending": cfg.trend_follow,
                "mean_reverting": -cfg.mean_reversion_fade,
            }.get(regime.label, cfg.random_walk_damping)
            score *= factor
            notes.append(f"{regime.label} regime ×{factor:+.2f}")

        trust = 1.0
        entropy_result = by_name.get(cfg.entropy_theory)
        entropy = entropy_result.metrics.get("entropy") if entropy_result else None
        if entropy is not None and entropy > cfg.entropy_floor:
            trust = 1.0 - cfg.entropy_penalty * (entropy - cfg.entropy_floor) / (1.0 - cfg.entropy_floor)
            notes.append(f"entropy {entropy:.3f} scales confidence ×{trust:.2f}")

        direction = "HOLD"
        if score >= cfg.buy_threshold:
            direction = "BUY"
        elif score <= -cfg.sell_threshold:
            direction = "SELL"

        risk = by_name.get(cfg.risk_theory)
        if risk is not None and direction != "HOLD":
            var = risk.metrics.get("var")
            if risk.label in cfg.veto_labels or (cfg.max_var is not None and var is not None and var > cfg.max_var):
                notes.append(f"{direction} vetoed by {risk.label} risk (VaR {var if var is not None else float('nan'):.2%})")
                direction = "HOLD"

        confidence = min(1.0, abs(score)) * trust
        if direction == "HOLD":
            threshold = cfg.buy_threshold if score >= 0 else cfg.sell_threshold
            # Confidence in HOLD: how far the score sits inside the no-trade band.
            confidence = (1.0 - min(1.0, abs(score) / threshold)) * trust if threshold > 0 else 0.0
        failed = [r.theory for r in request.results if not r.ok]
        if failed:
            notes.append(f"without {', '.join(failed)}")
        return Synthesis(direction=direction, confidence=round(confidence, 6), reasoning="; ".join(notes) + ".")


@hookimpl
def register_synthesizers(register):
    register(ConsensusSynthesizer)
