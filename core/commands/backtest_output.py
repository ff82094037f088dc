"""What `v7 backtest` prints: the verdict first, then each symbol's honest scores.

Intervals are 95% moving-block bootstrap intervals unless a column says "Wilson", which assumes
independent signals (too narrow when the horizon is longer than the step).
"""

from __future__ import annotations

from typing import Any


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2%}"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def interval(iv: Any, fmt: str = "{:+.3f}") -> str:
    """`value [low, high]` of an evaluation Interval; "-" when there is none."""
    if iv is None or iv.value is None:
        return "-"
    if iv.low is None or iv.high is None:
        return fmt.format(iv.value)
    return f"{fmt.format(iv.value)} [{fmt.format(iv.low)}, {fmt.format(iv.high)}]"


def points(iv: Any) -> str:
    """An edge (fraction units) in percentage points with its interval."""
    if iv is None or iv.value is None:
        return "-"
    text = f"{iv.value * 100:+.1f}"
    if iv.low is None or iv.high is None:
        return text + " pts"
    return f"{text} [{iv.low * 100:+.1f}, {iv.high * 100:+.1f}] pts"


def verdict_lines(result: Any) -> list[str]:
    """One line per symbol and one pooled: what the evidence says, before any other number."""
    lines = []
    for item in result.symbols:
        v = item.scores.verdict
        if v is not None:
            lines.append(f"  {item.symbol:<10} {v.text}")
    if result.pooled and len(result.symbols) > 1:
        lines.append(f"  {'pooled':<10} {result.pooled[0].verdict.text}")
    return lines


def print_result(result: Any) -> None:
    from rich.console import Console

    console = Console(width=140)
    horizon = result.settings["horizon"]
    first = result.symbols[0].scores.horizons[0] if result.symbols and result.symbols[0].scores.horizons else None
    block = f", blocks of {first.block} signals" if first is not None else ""
    console.print(f"[bold]Verdict[/bold] (rank IC of direction × confidence with the {horizon}-bar forward return, 95% block bootstrap{block}):")
    for line in verdict_lines(result):
        console.print(line, highlight=False)
    settings = result.settings
    console.print(
        f"\n[bold]Backtest[/bold] {'#' + str(result.id) if result.id else '(not stored)'}  config {result.config_hash}  "
        f"{result.granularity}, lookback {result.lookback}, synthesizer {result.synthesizer}, horizon {horizon} bars, "
        f"step {settings['step']}, fills at the {'next open' if settings.get('execution', 'next_open') == 'next_open' else 'close'}"
        f"{', ' + str(settings['delay_bars']) + ' bar(s) later' if settings.get('delay_bars') else ''}, "
        f"costs {settings['fees_bps']:g}+{settings['slippage_bps']:g} bps per change, SELL → {'short' if settings['short_on_sell'] else 'flat'}"
    )
    console.print(
        f"{result.bars:,} signals in {result.elapsed_seconds:.1f} s ({result.bars_per_second:.1f} bars/s, {result.workers} worker(s)); "
        "theory ms/bar: " + ", ".join(f"{k} {v:.1f}" for k, v in result.theory_ms.items())
    )
    if result.confidence_meaning:
        console.print(f"Confidence ({result.synthesizer}): {result.confidence_meaning}.")
    if result.llm_usage is not None:
        u = result.llm_usage
        console.print(f"LLM: {u.requests} request(s), {u.cached_answers} cached answer(s), {u.fallbacks} fallback(s), "
                      f"{u.prompt_tokens:,}+{u.completion_tokens:,} tokens, {u.cost:.4f} USD")
    for item in result.symbols:
        print_symbol(console, item)
    if len(result.pooled) and len(result.symbols) > 1:
        print_pooled(console, result.pooled)
    if result.learning:
        from .backtest_learning import print_learning

        print_learning(console, result.learning)
    print_lookahead(console, result.lookahead)


def print_symbol(console: Any, item: Any) -> None:
    from rich.table import Table

    s = item.scores
    console.print(f"\n[bold]{item.symbol}[/bold]  {s.start:%Y-%m-%d %H:%M} → {s.end:%Y-%m-%d %H:%M} UTC, {s.signals:,} signals "
                  f"({s.scored:,} scored{', ' + str(s.failed) + ' failed' if s.failed else ''})")
    head = s.horizons[0] if s.horizons else None
    table = Table(title=f"signals ({head.horizon if head else '?'}-bar forward return)", title_justify="left")
    for column in ("direction", "count", "share", "mean BUY/SELL confidence", "hit rate [95% block CI]", "base rate", "edge over base rate",
                   "Wilson CI (assumes independence)", "mean fwd return [95% CI]"):
        table.add_column(column, justify="right")
    for d in s.directions.values():
        e = head.directions.get(d.direction) if head else None
        table.add_row(
            d.direction, f"{d.count:,}", f"{d.share:.1%}",
            "-" if e is None or e.mean_confidence is None or d.direction == "HOLD" else f"{e.mean_confidence:.3f}",
            "-" if e is None or e.hit_rate is None else interval(e.hit_rate, "{:.1%}"),
            "-" if e is None else share(e.base_rate), "-" if e is None else points(e.edge),
            "-" if d.ci_low is None else f"{d.ci_low:.1%} – {d.ci_high:.1%}",
            "-" if e is None else interval(e.mean_return, "{:+.3%}"),
        )
    console.print(table)
    if head is not None:
        hold = head.directions.get("HOLD")
        hold_text = "" if hold is None or hold.mean_confidence is None else f"; HOLD confidence, on its own scale: mean {hold.mean_confidence:.3f}"
        console.print(f"IC (direction × confidence vs forward return): {interval(head.ic)}{hold_text}.", highlight=False)
    table = Table(title="strategy vs buy-and-hold (both pay costs)", title_justify="left")
    for column in ("", "total return", "Sharpe (ann.)", "max drawdown", "trades", "exposure"):
        table.add_column(column, justify="right")
    for label, p in (("follow the signal", s.strategy), ("buy and hold", s.buy_and_hold)):
        table.add_row(label, pct(p.total_return), "-" if p.sharpe is None else f"{p.sharpe:.2f}", f"{p.max_drawdown:.1%}", f"{p.trades:,}", f"{p.exposure:.0%}")
    console.print(table)
    if s.null is not None and s.null.p_value is not None:
        console.print(
            f"Fair null: Sharpe {s.null.sharpe:.2f} vs the same signals circularly shifted ({s.null.shifts:,} shifts): "
            f"p = {s.null.p_value:.3f} (null mean {s.null.null_mean:.2f}, 95th percentile {s.null.null_p95:.2f}).", highlight=False,
        )
    if head is not None:
        print_theories(console, head.theories, s.theories)
        print_calibration(console, head.calibration)
    if len(s.horizons) > 1:
        table = Table(title="horizons (same signals)", title_justify="left")
        for column in ("horizon", "scored", "IC [95% CI]", "BUY edge", "SELL edge", "verdict"):
            table.add_column(column, justify="right")
        for h in s.horizons:
            table.add_row(f"{h.horizon}", f"{h.scored:,}", interval(h.ic), points(h.directions["BUY"].edge), points(h.directions["SELL"].edge),
                          h.verdict.kind)
        console.print(table)
    if item.folds:
        print_folds(console, item)


def print_theories(console: Any, evidence: list[Any], correlations: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="theory bias vs forward return", title_justify="left")
    for column in ("theory", "spoke on", "rank IC [95% block CI]", "Spearman p (assumes independence)"):
        table.add_column(column, justify="right")
    plain = {c.theory: c for c in correlations}
    for t in evidence:
        c = plain.get(t.theory)
        if not t.directional:
            table.add_row(t.theory, "not directional", "-", "-")
            continue
        table.add_row(
            t.theory, "never" if not t.spoke else f"{t.spoke:.1%} of bars", interval(t.ic),
            "-" if c is None or c.spearman_p is None else f"{c.spearman_p:.3g}",
        )
    console.print(table)


def print_calibration(console: Any, calibration: Any) -> None:
    from rich.table import Table

    if calibration is None:
        return
    table = Table(title="calibration of BUY/SELL confidence", title_justify="left")
    for column in ("confidence", "n", "mean confidence", "hit rate", "Wilson CI (assumes independence)"):
        table.add_column(column, justify="right")
    for b in calibration.bins:
        table.add_row(f"{b.low:.3f} – {b.high:.3f}", f"{b.n:,}", f"{b.mean_confidence:.3f}", f"{b.hit_rate:.1%}", f"{b.ci_low:.1%} – {b.ci_high:.1%}")
    console.print(table)
    brier = "-" if calibration.brier is None else f"{calibration.brier:.4f}"
    base = "-" if calibration.base_rate_brier is None else f"{calibration.base_rate_brier:.4f}"
    slope = "-" if calibration.slope is None else f"{calibration.slope:+.2f}"
    console.print(f"Brier {brier} vs {base} for the base-rate forecast; calibration slope {slope} (1 = calibrated, 0 = says nothing).", highlight=False)


def print_folds(console: Any, item: Any) -> None:
    from rich.table import Table

    table = Table(title=f"walk-forward: {len(item.folds)} folds", title_justify="left")
    for column in ("fold", "range", "signals", "strategy", "buy & hold", "Sharpe", "max DD", "trades", "IC [95% CI]", "verdict"):
        table.add_column(column, justify="right")
    for k, f in enumerate(item.folds, 1):
        head = f.horizons[0] if f.horizons else None
        table.add_row(
            str(k), f"{f.start:%Y-%m-%d} → {f.end:%Y-%m-%d}", f"{f.signals:,}", pct(f.strategy.total_return),
            pct(f.buy_and_hold.total_return), "-" if f.strategy.sharpe is None else f"{f.strategy.sharpe:.2f}",
            f"{f.strategy.max_drawdown:.1%}", str(f.strategy.trades), "-" if head is None else interval(head.ic),
            "-" if head is None else head.verdict.kind,
        )
    console.print(table)
    table = Table(title="spread across folds", title_justify="left")
    for column in ("metric", "n", "mean", "std", "min", "max"):
        table.add_column(column, justify="right")
    for name, sp in item.fold_spread.items():
        if name in ("strategy_sharpe", "trades"):
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        elif name.endswith("_return"):
            fmt = pct
        else:
            fmt = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
        spread_fmt = (lambda v: "-" if v is None else f"{v:.2%}") if name.endswith("_return") else fmt  # noqa: E731
        table.add_row(name, str(sp.n), fmt(sp.mean), spread_fmt(sp.std), fmt(sp.min), fmt(sp.max))
    console.print(table)


def print_pooled(console: Any, pooled: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="pooled over symbols (calendar blocks shared by all symbols)", title_justify="left")
    for column in ("horizon", "scored", "IC [95% CI]", "verdict", *(t.theory for t in pooled[0].theories if t.directional)):
        table.add_column(column, justify="right")
    for p in pooled:
        table.add_row(f"{p.horizon}", f"{p.scored:,}", interval(p.ic), p.verdict.kind, *(interval(t.ic) for t in p.theories if t.directional))
    console.print(table)


def print_lookahead(console: Any, report: Any) -> None:
    if report is None:
        return
    if report.error:
        console.print(f"\n[bold red]Lookahead check failed to run:[/bold red] {report.error}")
    elif report.ok:
        console.print(f"\nLookahead check: {report.checked} signal(s) recomputed from truncated history in a fresh process; no difference.")
    else:
        console.print(f"\n[bold red]Lookahead check: {len(report.differences)} difference(s) in {report.checked} recomputed signal(s):[/bold red]")
        for d in report.differences[:50]:
            console.print(f"  {d.symbol} {d.bar_time:%Y-%m-%d %H:%M}  {d.field}: backtest {d.backtest} ≠ recomputed {d.recomputed}")
