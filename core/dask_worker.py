"""What runs on a Dask worker: the pipeline's compute part, built once per worker, and the tasks that use it.

Imported only with `[engine] executor = "dask"` (by `core/distributed.py`, on the driver, and by
the workers when they unpickle the plugin). Feeds and sinks are never built here: they stay in the
driving process, which fetches the candles and stores the signals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from distributed import WorkerPlugin, get_worker

if TYPE_CHECKING:  # pragma: no cover
    from .config import V7Config
    from .engine import Fetched, Pipeline

# The stages a worker runs: never feeds (sockets, rate limits) nor sinks (storage guarantees).
COMPUTE_KINDS = ("theory", "formatter", "synthesizer")


class PipelinePlugin(WorkerPlugin):
    """Builds the plugin registry and the pipeline's compute part once per worker, from the validated config.

    The config is plain data (pydantic models) and pickles; the registry holds modules and does
    not, so every worker discovers its own installed plugins: the same V7 and plugins must be
    installed there. `state` is extra data a task reads (a backtest's histories), shipped once.
    """

    def __init__(self, config: "V7Config", run_id: str, kinds: tuple[str, ...] = COMPUTE_KINDS, state: dict[str, Any] | None = None) -> None:
        self.config, self.run_id, self.kinds = config, run_id, kinds
        self.state: dict[str, Any] = dict(state or {})
        self.pipeline: "Pipeline | None" = None

    def setup(self, worker: Any) -> None:
        from .engine import Pipeline, limit_threads
        from .registry import load_registry

        limit_threads(1)  # one thread per worker process: the cluster, not BLAS, spreads the work
        registry = load_registry(blocked=self.config.plugins.blocked)
        pipeline = Pipeline.build(self.config, registry, kinds=self.kinds)
        pipeline.run_id = self.run_id  # signals carry the driver's run id, as with the local executor
        self.pipeline = self.state["pipeline"] = pipeline

    def teardown(self, worker: Any) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None


def _plugin(name: str) -> PipelinePlugin:
    plugin = get_worker().plugins.get(name)
    if not isinstance(plugin, PipelinePlugin) or plugin.pipeline is None:
        raise RuntimeError(f"worker has no V7 pipeline {name!r} (its setup failed: see the worker's log)")
    return plugin


def evaluate_batch(name: str, batch: list[tuple[str, "Fetched"]]) -> list[tuple[str, Any, str | None]]:
    """Theories → formatters → synthesizer for each symbol of a batch: (symbol, signal or None, error)."""
    pipeline = _plugin(name).pipeline
    assert pipeline is not None
    out: list[tuple[str, Any, str | None]] = []
    for symbol, fetched in batch:
        try:
            out.append((symbol, pipeline.evaluate(symbol, fetched), None))
        except Exception as exc:  # one symbol's bug must not fail its batch-mates
            out.append((symbol, None, f"{type(exc).__name__}: {exc}"))
    return out


def run_with_state(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args, state)` with this worker's copy of the plugin's state (pipeline included)."""
    return fn(*args, _plugin(name).state)
