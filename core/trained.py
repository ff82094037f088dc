"""A trained synthesizer's model must fit the enabled theories: the keys `v7 train` stores, checked at start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .components import StartupError

if TYPE_CHECKING:  # pragma: no cover
    from .components import Synthesizer, Theory
    from .config import V7Config


def theory_keys(config: "V7Config", theories: "list[Theory]") -> dict[str, str]:
    """Each enabled theory's key (its name, version, config, lookback, granularity hashed): what a model's features came from."""
    from .features.keys import theory_key

    return {t.name: theory_key(config, t.name, str(t.version)) for t in theories}


def check_trained(config: "V7Config", synthesizer: "Synthesizer", theories: "list[Theory]") -> None:
    """StartupError naming the difference when the synthesizer loaded a model trained on other theories."""
    if not type(synthesizer).supports("model_details"):
        return
    details: dict[str, Any] | None = synthesizer.model_details()
    if not details or "theory_keys" not in details:
        return
    expected, enabled = dict(details["theory_keys"]), theory_keys(config, theories)
    if expected == enabled:
        return
    problems = []
    for name in sorted(set(expected) | set(enabled)):
        if name not in enabled:
            problems.append(f"{name} is not enabled")
        elif name not in expected:
            problems.append(f"{name} is enabled but the model never saw it")
        elif expected[name] != enabled[name]:
            problems.append(f"{name} has another version or config than in training (key {enabled[name]}, trained {expected[name]})")
    raise StartupError(
        f"synthesizer {synthesizer.name!r}: its model was trained on other theory features: {'; '.join(problems)}. "
        "Train again with this config (`v7 train`) or enable the theories it was trained with"
    )
