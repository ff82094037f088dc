"""How a position is shown (`v7 signals`, the dashboard): flat is `0%`, and nothing else ever looks flat."""

from __future__ import annotations

import pytest

from v7.core.sizing.rule import position_text


@pytest.mark.parametrize("value, shown", [
    (0.0, "0%"), (-0.0, "0%"),
    (0.047, "+4.7%"), (-0.125, "-12.5%"), (1.0, "+100.0%"), (0.0005, "+0.1%"),
    (6.9e-05, "+0.01%"), (-6.9e-05, "-0.01%"), (0.00049, "+0.05%"),  # would have shown as ±0.0%
    (1e-07, "+<0.01%"), (-4.9e-05, "-<0.01%"),
])
def test_position_text(value, shown):
    assert position_text(value) == shown


def test_no_position_but_flat_is_shown_as_zero():
    for exponent in range(-12, 1):
        for value in (10.0**exponent, -(10.0**exponent), 0.5 * 10.0**exponent):
            text = position_text(value)
            assert text != "0%" and text[0] == ("+" if value > 0 else "-")
            assert any(c in "123456789" for c in text) or "<" in text  # a figure, or a bound, never +0.0%
