"""Position sizing: how much of the capital a signal suggests, from its probability, the payoff of
past moves, the recent volatility and the risk theory's tail loss (docs/sizing.md)."""

from .config import SizingConfig
from .rule import Sizing, position_for, size_answer, sizing_for

__all__ = ["Sizing", "SizingConfig", "position_for", "size_answer", "sizing_for"]
