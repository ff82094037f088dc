"""The text of each notification: a signal, a run problem, or the digest of what the rate limit held back."""

from __future__ import annotations

from dataclasses import dataclass

from v7 import RunProblem, Signal, format_utc

REASONING_CHARS = 600  # chat apps cut or refuse long messages; the store keeps the whole reasoning
DIGEST_LINES = 20  # one line per held message in a digest, then a count of the rest


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    kind: str  # "signal", "problem" or "digest"
    level: str = "info"  # Apprise's notify type: info, success, warning, failure
    summary: str = ""  # its line in a digest


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def signal_message(signal: Signal, title: str) -> Message:
    price = f"{signal.price:,.2f}" if abs(signal.price) >= 1 else f"{signal.price:.6g}"
    head = f"{signal.direction} {signal.symbol} at {price}, confidence {signal.confidence:.2f}"
    lines = [
        head,
        f"{signal.granularity} bar of {format_utc(signal.bar_time)}, decided by {signal.synthesizer}"
        + (f" (fallback: {_cut(signal.fallback_reason, 120)})" if signal.fallback_reason else ""),
    ]
    if signal.reasoning.strip():
        lines.append(_cut(signal.reasoning, REASONING_CHARS))
    return Message(f"{title} {signal.direction} {signal.symbol}", "\n".join(lines), "signal", "info", head)


PROBLEM_TITLES = {
    "feed_failing": "feed failing",
    "llm_budget": "LLM budget reached",
    "store_spooling": "store spooling",
}


def problem_message(problem: RunProblem, title: str) -> Message:
    what = PROBLEM_TITLES.get(problem.kind, problem.kind)
    if problem.kind == "feed_failing":
        head = f"feed {problem.plugin} failed for {problem.symbol} {problem.count} iteration(s) in a row"
    elif problem.kind == "llm_budget":
        head = f"synthesizer {problem.plugin} reached its budget; the fallback decides"
    else:
        head = f"sink {problem.plugin} could not store a signal ({problem.count} in a row)"
    body = f"{head}\n{_cut(problem.message, REASONING_CHARS)}" + (f"\nrun {problem.run_id}" if problem.run_id else "")
    return Message(f"{title} problem: {what}", body, "problem", "warning", head)


def digest_message(held: list[Message], total: int, title: str) -> Message:
    """One message for `total` held back messages, of which the first ones in `held`."""
    lines = [f"{total} notification(s) held back by the rate limit:"]
    lines += [f"- {message.summary or message.title}" for message in held[:DIGEST_LINES]]
    if total > len(held[:DIGEST_LINES]):
        lines.append(f"… and {total - len(held[:DIGEST_LINES])} more")
    return Message(f"{title} digest: {total} held back", "\n".join(lines), "digest", "info", lines[0])
