"""`[engine] executor = "dask"`: the per-symbol work of `v7 run` and of backtests on a Dask cluster.

The driver (the `v7` process) keeps the feeds and the sinks: it fetches candles and market context,
and stores every signal itself, exactly as the local executor does. The cluster runs the compute
part (theories → formatters → synthesizer), built once per worker by a `WorkerPlugin`
(core/dask_worker.py). Symbols are batched: one task per worker per iteration, holding the
symbols routed to it; a symbol goes to the same worker every iteration (rendezvous hashing on the
worker addresses), so stateful theories keep their caches, and a lost worker moves only its own
symbols. Tasks are restricted loosely (`allow_other_workers`): a dead worker's batch is recomputed
elsewhere, and its futures resolve once, so each symbol's signal is stored once.

Dask is imported only here, and this module only when the executor is "dask".
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.util
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from .components import StartupError
from .logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from .config import EngineConfig
    from .engine import Fetched, Pipeline

CONNECT_TIMEOUT_S = 5  # reaching a scheduler (and its first worker)
RETRIES = 2  # a task that raised is retried this often; a task on a lost worker is always rescheduled


def route(symbol: str, workers: list[str]) -> str:
    """The worker a symbol goes to: the same one while it is up; only a lost worker's symbols move."""
    return max(workers, key=lambda worker: hashlib.blake2b(f"{symbol}\0{worker}".encode(), digest_size=8).digest())


class Cluster:
    """A client of the configured cluster (`dask_address`), or of a LocalCluster started here and closed with it."""

    def __init__(self, engine: "EngineConfig") -> None:
        if importlib.util.find_spec("distributed") is None:
            raise StartupError('[engine] executor = "dask" needs Dask distributed, which is not installed: pip install "v7[dask]"')
        import dask
        from distributed import Client, LocalCluster

        self.cluster: Any = None
        self.plugins: list[str] = []
        if engine.dask_address:
            try:
                self.client = Client(engine.dask_address, timeout=CONNECT_TIMEOUT_S)
            except Exception as exc:
                raise StartupError(
                    f"[engine] dask_address = {engine.dask_address!r}: no Dask scheduler answered within {CONNECT_TIMEOUT_S} s "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            try:
                self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            except Exception:
                self.client.close()
                raise StartupError(f"[engine] dask_address = {engine.dask_address!r}: the scheduler has no worker (start `dask worker {engine.dask_address}`)") from None
        else:
            from .backtest.compute import available_cores

            # Work stealing would move a sticky batch to an idle worker: off for the clusters V7 starts.
            with dask.config.set({"distributed.scheduler.work-stealing": False}):
                self.cluster = LocalCluster(
                    n_workers=engine.dask_workers or available_cores(), threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None, silence_logs=40,
                )
            self.client = Client(self.cluster)
        get_logger().info("dask cluster", scheduler=self.client.scheduler.address, workers=len(self.workers()), local=self.cluster is not None)

    def workers(self) -> list[str]:
        return sorted(self.client.nthreads())

    def add_plugin(self, plugin: Any, name: str) -> None:
        try:
            if hasattr(self.client, "register_plugin"):
                self.client.register_plugin(plugin, name=name)
            else:  # pragma: no cover - distributed before 2023.9
                self.client.register_worker_plugin(plugin, name=name)
        except Exception as exc:
            self.close()
            raise StartupError(f'[engine] executor = "dask": the workers could not build the pipeline: {type(exc).__name__}: {exc}') from None
        self.plugins.append(name)

    def close(self) -> None:
        for name in self.plugins:
            try:
                self.client.unregister_worker_plugin(name)
            except Exception:  # a worker gone, a scheduler stopping: nothing left to tear down there
                pass
        self.plugins.clear()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


class DaskEvaluator:
    """The scheduler's evaluator on a cluster: a batch of fetched symbols in, one future per symbol out."""

    def __init__(self, pipeline: "Pipeline") -> None:
        self.cluster = Cluster(pipeline.config.engine)  # first: it says so when distributed is missing
        from .dask_worker import PipelinePlugin

        self.name = f"v7-run-{pipeline.run_id}"
        self.cluster.add_plugin(PipelinePlugin(pipeline.config, pipeline.run_id), self.name)
        self.tasks: set[Any] = set()  # dask forgets a task whose future nobody holds

    def evaluate(self, items: list[tuple[str, "Fetched"]]) -> list[tuple[cf.Future, str]]:
        from .dask_worker import evaluate_batch

        workers = self.cluster.workers()
        groups: dict[str, list[tuple[str, "Fetched"]]] = {}
        for symbol, fetched in items:
            groups.setdefault(route(symbol, workers) if workers else "", []).append((symbol, fetched))
        out: list[tuple[cf.Future, str]] = []
        for address, batch in groups.items():
            futures = {symbol: cf.Future() for symbol, _ in batch}
            task = self.cluster.client.submit(
                evaluate_batch, self.name, batch, workers=[address] if address else None, allow_other_workers=True,
                retries=RETRIES, pure=False, key=f"v7-evaluate-{uuid.uuid4().hex}",
            )
            self.tasks.add(task)
            task.add_done_callback(partial(self._resolve, futures))
            out.extend((future, symbol) for symbol, future in futures.items())
        return out

    def _resolve(self, futures: dict[str, cf.Future], task: Any) -> None:
        """In dask's callback thread: each symbol's future gets its signal (or error) exactly once."""
        self.tasks.discard(task)
        try:
            results = task.result()
        except BaseException as exc:  # the batch failed for good (a worker killed it too often, cancelled)
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            return
        for symbol, signal, error in results:
            future = futures.pop(symbol, None)
            if future is None or future.done():
                continue
            if error is None:
                future.set_result(signal)
            else:
                future.set_exception(RuntimeError(f"on a dask worker: {error}"))
        for future in futures.values():  # pragma: no cover - a batch answers for every symbol it holds
            future.set_exception(RuntimeError("the dask batch returned no answer for this symbol"))

    def close(self) -> None:
        self.cluster.close()


class ChunkPool:
    """A backtest's (symbol, chunk) tasks on the cluster, as a `concurrent.futures` executor.

    `state` is what the forked workers would inherit (histories, known results, settings): shipped
    once per worker with the plugin that builds the pipeline there.
    """

    def __init__(self, pipeline: "Pipeline", state: dict[str, Any]) -> None:
        from .backtest.models import BacktestError

        try:
            self.cluster = Cluster(pipeline.config.engine)
            from .dask_worker import COMPUTE_KINDS, PipelinePlugin

            self.name = f"v7-backtest-{uuid.uuid4().hex[:12]}"
            kinds = COMPUTE_KINDS if state.get("synthesize") else ("theory",)
            self.cluster.add_plugin(PipelinePlugin(pipeline.config, pipeline.run_id, kinds, state), self.name)
        except StartupError as exc:
            raise BacktestError(str(exc)) from None
        self.size = len(self.cluster.workers())
        self.executor = self.cluster.client.get_executor(retries=RETRIES, pure=False)

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        """`fn(*args, state)` on a worker (`fn` takes the worker's state as its last argument)."""
        from .dask_worker import run_with_state

        return self.executor.submit(run_with_state, self.name, fn, *args)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.executor.shutdown(wait=wait and not cancel_futures)

    def __enter__(self) -> "ChunkPool":
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        from distributed import KilledWorker

        from .backtest.models import BacktestError

        self.cluster.close()
        if isinstance(exc, KilledWorker):
            raise BacktestError(f"dask workers died running a chunk again and again (out of memory, or killed): {exc}") from exc
