"""Small plugins used by the core tests; each shows one behaviour of the engine."""

from __future__ import annotations

import time

from pydantic import Field

from v7 import InsufficientData, Theory, TheoryConfig, TheoryFinding, hookimpl


class ConstantConfig(TheoryConfig):
    bias: float = Field(default=0.5, ge=-1, le=1)


class ConstantTheory(Theory):
    """Always the configured bias: lets tests steer the consensus."""

    name = "constant"
    version = "1.0"
    default_min_candles = 5
    Config = ConstantConfig

    def analyze(self, candles):
        return TheoryFinding(
            bias=self.config.bias, confidence=1.0, label="fixed",
            interpretation="A fixed opinion.", metrics={"value": self.config.bias, "bars": float(len(candles))},
        )


class RaisingTheory(Theory):
    name = "raising"
    default_min_candles = 5

    def analyze(self, candles):
        raise ZeroDivisionError("boom in analyze")


class HangingTheory(Theory):
    name = "hanging"
    default_min_candles = 5

    def analyze(self, candles):
        time.sleep(30)


class InvalidTheory(Theory):
    name = "invalid"
    default_min_candles = 5

    def analyze(self, candles):
        return TheoryFinding.model_construct(bias=3.0, confidence=0.5, label="x", interpretation="bad", metrics={})


class NotAFindingTheory(Theory):
    name = "not_a_finding"
    default_min_candles = 5

    def analyze(self, candles):
        return 0.5


class AbstainingTheory(Theory):
    name = "abstaining"
    default_min_candles = 5

    def analyze(self, candles):
        raise InsufficientData("series is flat")


SAMPLES = [ConstantTheory, RaisingTheory, HangingTheory, InvalidTheory, NotAFindingTheory, AbstainingTheory]


class SamplePlugin:
    @hookimpl
    def register_theories(self, register):
        for cls in SAMPLES:
            register(cls)
