"""A calibrated test synthesizer (a fixed probability) and the registry that holds it, for the sizing tests."""

from __future__ import annotations

from pydantic import Field

from v7 import PluginConfig, Synthesis, SynthesisRequest, Synthesizer, hookimpl


class FixedConfig(PluginConfig):
    direction: str = "BUY"
    probability: float = Field(default=0.7, ge=0, le=1)
    payoff: float | None = Field(default=None, gt=0, description="the b of its past signals it states (Synthesis.payoff)")


class FixedProbability(Synthesizer):
    """Always the configured direction, with a confidence it claims is a calibrated probability."""

    name = "fixed_probability"
    version = "1.0"
    calibrated = True
    Config = FixedConfig

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        return Synthesis(direction=self.config.direction, confidence=self.config.probability, reasoning="fixed", payoff=self.config.payoff)


class SizingPlugins:
    @hookimpl
    def register_synthesizers(self, register):
        register(FixedProbability)


def make_registry():
    from v7.core.registry import PluginSource, load_registry

    return load_registry([(SizingPlugins(), PluginSource("sizing-test-plugins", "v7-sizing-tests", "1.0"))])
