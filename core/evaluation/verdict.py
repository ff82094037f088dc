"""One honest sentence per scope: does the signal carry information, by its rank IC's interval?

Only an interval that excludes zero is evidence; a point estimate on its own is not, and too few
scored signals is said as such rather than read as "no information".
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from .bootstrap import Interval


class Verdict(BaseModel):
    """What the rank IC says for a symbol (or "pooled"), in a kind and in words."""

    model_config = ConfigDict(extra="forbid")

    scope: str
    kind: Literal["information", "inverse", "none", "insufficient"]
    text: str
    ic: Interval | None


def _ic_text(ic: Interval) -> str:
    return f"IC {ic.value:+.3f} [{ic.low:+.3f}, {ic.high:+.3f}]"


def verdict(scope: str, ic: Interval | None, min_n: int = 30) -> Verdict:
    """information when the IC interval is above zero, inverse when below, none when it covers zero."""
    if ic is None or ic.n < min_n or ic.value is None or ic.low is None or ic.high is None:
        n = 0 if ic is None else ic.n
        why = f"{n} scored signals"
        if ic is not None and ic.value is not None and n >= min_n and "too few" in ic.method:
            why += ", too few for five bootstrap blocks: score more bars, or a shorter horizon"
        return Verdict(scope=scope, kind="insufficient", text=f"insufficient data ({why})", ic=ic)
    side = ic.excludes_zero()
    if side > 0:
        return Verdict(scope=scope, kind="information", text=f"evidence of information ({_ic_text(ic)})", ic=ic)
    if side < 0:
        return Verdict(scope=scope, kind="inverse", text=f"evidence of inverse information ({_ic_text(ic)})", ic=ic)
    return Verdict(scope=scope, kind="none", text=f"no evidence of information ({_ic_text(ic)})", ic=ic)
