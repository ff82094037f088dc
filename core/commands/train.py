"""`v7 train`: show a learning synthesizer the history (walk-forward, as `v7 backtest` does) and save its model.

Only click is imported here; the backtest machinery loads inside the command.
"""

from __future__ import annotations

from typing import Any

import click

from .common import CONFIG_HELP, fail, load, parse_moment, parse_symbols


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--symbols", default=None, help="Comma-separated symbols to train on (default: the config's).")
@click.option("--start", default=None, help="First training bar, ISO UTC (default: the first bar with a full lookback).")
@click.option("--end", default=None, help="Last training bar, ISO UTC (default: the end of the history).")
@click.option("--output", "output", default=None, type=click.Path(dir_okay=False),
              help="Model file to write (default: the synthesizer's model_path).")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Processes computing theories (0 = one per CPU core).")
@click.pass_obj
def train(ctx: Any, config_path: str, symbols: str | None, start: str | None, end: str | None, output: str | None, workers: int | None) -> None:
    """Train the configured synthesizer on history and save its model (`[synthesizer] use` must learn, e.g. "learned").

    The history is replayed bar by bar through the theories (read from the feature store when they
    were computed before) and shown to the synthesizer in time order; its walk-forward answers are
    scored out of sample against the fallback's on the same bars, as in `v7 backtest`. Then it is
    trained once more on every labelled bar and written, with the training range, the theories'
    keys and those scores, to `--output` (default: its `model_path`). `v7 run` with `model_path` set
    loads it and refuses a model trained on other theories or settings.
    """
    from pathlib import Path

    from pydantic import ValidationError

    from ..backtest import BacktestError, resolve_settings, run_backtest
    from ..config import ConfigError, validate_config
    from ..engine import limit_threads
    from ..errors import one_line
    from ..logs import configure_logging
    from .backtest_learning import print_learning

    registry, config = load(ctx, config_path)
    name = config.synthesizer
    component = registry.get("synthesizer", name)
    if component is None or not component.cls.learns or not component.cls.supports("save_model"):
        fail(f"synthesizer {name!r} does not learn from history (it must declare learns = True and implement save_model); "
             'set [synthesizer] use = "learned"')
    if ctx.log_level is None:
        configure_logging("warning" if config.logging.level in ("debug", "info") else config.logging.level, ctx.log_json or config.logging.json_lines)
    raw = config.effective()
    table = raw.setdefault("synthesizer", {}).setdefault(name, {})
    target = Path(output or table.get("model_path") or "")
    if not str(target) or str(target) == ".":
        fail(f"give --output FILE, or set model_path under [synthesizer.{name}]")
    table["model_path"] = ""  # learn from scratch: a model it would load is what is being made
    try:
        fresh = validate_config(raw, registry, where=config_path)
        settings = resolve_settings(fresh, start=parse_moment(start, "--start"), end=parse_moment(end, "--end"), workers=workers, folds=1)
    except ConfigError as exc:
        fail("; ".join(exc.problems))
    except (ValidationError, click.BadParameter) as exc:
        fail(exc.format_message() if isinstance(exc, click.BadParameter) else one_line(exc, limit=20))
    limit_threads(config.engine.max_threads)

    def save(pipeline: Any, result: Any) -> None:
        pipeline.synthesizer.save_model(target, training_details(fresh, pipeline, result))

    chosen = parse_symbols(symbols)
    click.echo(f"Training {name} on {', '.join(chosen or config.engine.symbols)} (horizon scored: {settings.horizon} bars)…", err=True)
    try:
        run = run_backtest(fresh, registry, settings=settings, symbols=chosen, before_close=save)
    except BacktestError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"could not write the model file {target}: {exc}")
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    from rich.console import Console

    print_learning(Console(width=140), run.result.learning)
    click.echo(f"\nSaved model to {target}. Use it: model_path = \"{target}\" under [synthesizer.{name}] (same theories and horizon).")


def training_details(config: Any, pipeline: Any, result: Any) -> dict[str, Any]:
    """What the model file keeps about its training: range, theory keys, out-of-sample scores."""
    from datetime import datetime, timezone

    from .. import __version__
    from ..trained import theory_keys

    scores = {}
    for item in result.learning:
        head = item.learned.horizons[0] if item.learned is not None and item.learned.horizons else None
        scores[item.symbol] = {
            "bars": item.bars, "model_answered": item.model_answered, "verdict": head.verdict.text if head else None,
            "ic": head.ic.model_dump() if head and head.ic else None,
            "brier": head.calibration.brier if head and head.calibration else None,
            "base_rate_brier": head.calibration.base_rate_brier if head and head.calibration else None,
            "calibration_slope": head.calibration.slope if head and head.calibration else None,
            "fair_null_p": item.learned.null.p_value if item.learned is not None and item.learned.null else None,
            "baseline": item.baseline,
            "baseline_verdict": item.baseline_scores.horizons[0].verdict.text if item.baseline_scores and item.baseline_scores.horizons else None,
        }
    return {
        "trained_at": datetime.now(timezone.utc).isoformat(), "v7_version": __version__, "config_hash": config.config_hash(),
        "granularity": config.engine.granularity, "lookback": config.engine.lookback, "scored_horizon": result.settings["horizon"],
        "symbols": {s.symbol: {"first_bar": s.scores.start.isoformat(), "last_bar": s.scores.end.isoformat(), "bars": s.scores.signals} for s in result.symbols},
        "theory_keys": theory_keys(config, pipeline.theories), "out_of_sample": scores,
    }
