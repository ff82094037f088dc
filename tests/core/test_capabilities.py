"""Optional capabilities: declared on the base classes with a "not supported" default, detected by `supports`."""

from __future__ import annotations

import pytest

from v7 import Feed, NotSupported, Sink, Synthesizer
from v7.core.registry import load_registry


class BareSink(Sink):
    name = "bare"


class ReadableSink(Sink):
    name = "readable"

    def reader(self):
        return "reader"

    @classmethod
    def reader_at(cls, location):
        return location


def test_a_plugin_without_a_capability_says_so_and_raises_not_supported():
    assert not BareSink.supports("reader") and not BareSink.supports("reader_at")
    with pytest.raises(NotSupported, match="sink 'bare' cannot be read back"):
        BareSink().reader()
    with pytest.raises(NotSupported, match="bare"):
        BareSink.reader_at("x")


def test_overriding_a_method_or_classmethod_declares_the_capability():
    assert ReadableSink.supports("reader") and ReadableSink.supports("reader_at")
    assert ReadableSink.reader_at("here") == "here"


def test_only_declared_capabilities_can_be_asked_for():
    with pytest.raises(ValueError, match="not an optional capability"):
        BareSink.supports("write")


def test_the_builtins_declare_what_they_offer():
    registry = load_registry()
    offers = {(c.kind, c.name): c.cls for c in registry.all()}
    assert offers[("feed", "replay")].supports("fetch_history")
    assert offers[("feed", "coinbase")].supports("fetch_history")
    assert not offers[("feed", "coingecko")].supports("fetch_history")
    assert offers[("synthesizer", "deepseek")].supports("estimate_cost")
    assert not offers[("synthesizer", "consensus")].supports("estimate_cost")
    assert offers[("sink", "sqlite")].supports("reader") and offers[("sink", "jsonl")].supports("reader")
    assert issubclass(offers[("feed", "replay")], Feed) and issubclass(offers[("synthesizer", "deepseek")], Synthesizer)
