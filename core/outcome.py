"""What a run did with its signals: stored, already stored, spooled or lost, and the exit status that says so."""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import Signal

SignalKey = tuple[str, str, str, str]
"""What makes a signal unique in every store: symbol, granularity, bar time (ISO), config hash."""


def signal_key(signal: Signal) -> SignalKey:
    return (signal.symbol, signal.granularity, signal.bar_time.isoformat(), signal.config_hash or "")


@dataclass(frozen=True)
class Delivery:
    """What the sinks did with one signal: how many stored it, had it already, spooled it, held it in memory."""

    stored: int = 0
    already: int = 0
    spooled: int = 0
    held: tuple[str, ...] = ()  # names of the sinks holding it in memory until they close
    sinks: int = 0  # how many sinks were asked: with none, nothing can be lost
    spooled_in: tuple[str, ...] = ()  # names of the sinks that spooled it


# Exit status of `v7 run` (README, "Exit status"): the most serious outcome wins.
EXIT_OK, EXIT_NO_SIGNAL, EXIT_SPOOLED, EXIT_LOST = 0, 1, 3, 4


@dataclass
class RunOutcome:
    """What a run did, as counts: each signal is stored, already stored, spooled (kept durably, stored
    later) or lost (in no store and no spool: its JSON went to stdout)."""

    produced: int = 0
    stored: int = 0
    already_stored: int = 0
    spooled: int = 0
    lost: int = 0
    symbols: list[str] = field(default_factory=list)
    with_signal: set[str] = field(default_factory=set)
    up_to_date: set[str] = field(default_factory=set)  # resumed with every bar already stored: nothing to do
    held: dict[SignalKey, tuple[str, ...]] = field(default_factory=dict)  # until the holding sinks close
    spooling_sinks: set[str] = field(default_factory=set)

    @property
    def silent_symbols(self) -> list[str]:
        """Symbols that never produced a signal (no usable data, or every synthesizer failed)."""
        return [s for s in self.symbols if s not in self.with_signal and s not in self.up_to_date]

    def count(self, signal: Signal, delivery: Delivery) -> bool:
        """Count one signal; False when it is lost for good (no sink stored, spooled or holds it)."""
        self.produced += 1
        self.with_signal.add(signal.symbol)
        if delivery.stored:
            self.stored += 1
        elif delivery.already:
            self.already_stored += 1
        elif delivery.spooled:
            self.spooled += 1
            self.spooling_sinks.update(delivery.spooled_in)
        elif delivery.held:
            self.held[signal_key(signal)] = delivery.held
        elif delivery.sinks:
            self.lost += 1
            return False
        return True

    def settle(self, unsaved: dict[str, set[SignalKey]]) -> list[SignalKey]:
        """After the sinks closed: a held signal that some holder saved counts as spooled, else lost."""
        lost = [key for key, holders in self.held.items() if all(key in unsaved.get(name, set()) for name in holders)]
        for key, holders in self.held.items():
            if key not in lost:
                self.spooling_sinks.update(name for name in holders if key not in unsaved.get(name, set()))
        self.lost += len(lost)
        self.spooled += len(self.held) - len(lost)
        self.held = {}
        return lost

    def drained(self, waiting: int) -> None:
        """After the sinks closed: spools emptied later in the run mean those signals are stored now.

        `waiting` is what the spooling sinks' spools still hold (an upper bound on this run's share)."""
        still = min(self.spooled, max(waiting, 0))
        self.stored += self.spooled - still
        self.spooled = still

    @property
    def exit_code(self) -> int:
        if self.lost:
            return EXIT_LOST
        if self.silent_symbols:
            return EXIT_NO_SIGNAL
        if self.spooled:
            return EXIT_SPOOLED
        return EXIT_OK

    def as_fields(self) -> dict[str, int]:
        return {"produced": self.produced, "stored": self.stored, "already_stored": self.already_stored,
                "spooled": self.spooled, "lost": self.lost}

    def describe(self) -> str:
        """The closing line of `v7 run`."""
        return (
            f"{self.produced} signal(s) produced, {self.stored} stored, {self.already_stored} already stored, "
            f"{self.spooled} spooled, {self.lost} lost"
        )
