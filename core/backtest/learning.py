"""A synthesizer that learns, judged against its fallback on the same bars.

From the first bar its own model answered to the end, both signal sequences are scored the same
way (IC, edge over the base rate, calibration, the fair null, the verdict); the bars before it, where
the fallback stood in while the model collected its first rows, would flatter neither.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence

from ..models import PromptRequest, Synthesis, SynthesisRequest
from .models import BarSignal, LearnedComparison
from .scoring import score

if TYPE_CHECKING:  # pragma: no cover
    from ..config import BacktestConfig
    from ..engine import Pipeline
    from ..models import CandleSeries

IMPORTANCES_KEPT = 15


def learns(pipeline: "Pipeline") -> bool:
    """The primary synthesizer learns and an offline fallback can answer beside it."""
    primary, fallback = pipeline.synthesizer, pipeline.fallback
    return primary is not None and type(primary).learns and fallback is not None and not fallback.needs_prompt


def baseline_answer(pipeline: "Pipeline", request: PromptRequest, synthesis: Synthesis, answered_by: str) -> tuple[str, float, str] | None:
    """The fallback's (direction, confidence, rule) on this bar, beside a learning synthesizer's answer."""
    if not learns(pipeline):
        return None
    assert pipeline.fallback is not None
    if answered_by == pipeline.fallback.name:
        return synthesis.direction, synthesis.confidence, synthesis.decided_by or ""
    try:
        answer = pipeline.fallback.synthesize(SynthesisRequest.of(request, ""))
    except Exception:
        return None
    return answer.direction, answer.confidence, answer.decided_by or ""


def compare_learned(
    history: "CandleSeries", signals: list[BarSignal], last: int, settings: "BacktestConfig", theories: Sequence[str],
    directional: dict[str, bool], learner: str, baseline: str, importances: dict[str, float],
) -> LearnedComparison:
    first = next((i for i, s in enumerate(signals) if s.synthesizer == learner), None)
    top = dict(sorted(importances.items(), key=lambda kv: -kv[1])[:IMPORTANCES_KEPT])
    if first is None:
        return LearnedComparison(symbol=history.symbol, learner=learner, baseline=baseline, bars=0, model_answered=0, importances=top)
    own = signals[first:]
    theirs = [
        dataclasses.replace(s, direction=s.baseline[0], confidence=s.baseline[1], synthesizer=baseline, fallback_reason=None, decided_by=s.baseline[2])
        if s.baseline is not None else dataclasses.replace(s, direction=None, synthesizer="", confidence=0.0)
        for s in own
    ]
    return LearnedComparison(
        symbol=history.symbol, learner=learner, baseline=baseline,
        first_model_bar=datetime.fromtimestamp(own[0].timestamp, timezone.utc), bars=len(own),
        model_answered=sum(1 for s in own if s.synthesizer == learner),
        learned=score(history, own, last, settings, theories, directional),
        baseline_scores=score(history, theirs, last, settings, theories, directional), importances=top,
    )
