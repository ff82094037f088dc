"""`v7 dashboard`: the read-only web app over the store (docs/dashboard.md).

It reads through the configured sink's reader, as `v7 stats` does, and serves on 127.0.0.1 unless
told otherwise; any other interface needs `V7_DASHBOARD_TOKEN`. FastAPI and uvicorn are imported
inside the command, so `v7 --help` stays fast.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import click

WINDOW_CHOICES = ("1h", "24h", "7d", "30d", "all")


@click.command()
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Config whose sink names the store (its first enabled sink that can be read back).")
@click.option("--sink", "sink_name", default=None, help="Read this sink's store instead of the first readable one.")
@click.option("--db", "db_path", default=None, help="The store's location, instead of the config's.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to serve on; any but loopback requires the V7_DASHBOARD_TOKEN environment variable.")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(0, 65535), help="Port (0 = any free one).")
@click.option("--window", type=click.Choice(WINDOW_CHOICES), default="24h", show_default=True,
              help="The overview's window at first (signals created in the last …).")
@click.pass_obj
def dashboard(ctx: Any, config_path: str | None, sink_name: str | None, db_path: str | None, host: str, port: int, window: str) -> None:
    """Serve the dashboard: signal mix, latest signals, charts, backtests, plugins; live as `v7 run` writes."""
    from ..dashboard.security import TOKEN_ENV, DashboardError, is_loopback, required_token
    from .common import fail, load
    from .stats import open_sink_reader, read_failed

    try:
        token = required_token(host, os.environ.get(TOKEN_ENV))
    except DashboardError as exc:
        fail(str(exc))
    opened = open_sink_reader(ctx, config_path, db_path, sink_name)
    try:
        opened.reader.page(limit=1)  # the store opens now, or the command says why
    except Exception as exc:
        read_failed(opened, exc)
    registry, config = load(ctx, config_path)
    try:
        listener = _listen(host, port)
    except OSError as exc:
        opened.reader.close()
        fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}" + (" (another dashboard running? try --port)" if exc.errno == 98 else ""))
    app, dash = _app(opened, registry, config, config_path, window, token, host, _reader_factory(registry, config, opened, db_path))
    server = _server(app)  # uvicorn imported and configured before the address is shown: the first request need not wait for it
    bound = listener.getsockname()[1]
    where = f"http://{host if ':' not in host else '[' + host + ']'}:{bound}/"
    click.echo(f"V7 dashboard on {where}{'?token=…' if token else ''} reading {opened.location}; Ctrl+C stops.", err=True)
    if not is_loopback(host):
        click.echo(f"Open it with ?token=<the value of {TOKEN_ENV}> once; the browser keeps it as a cookie.", err=True)
    server.run(sockets=[listener])
    dash.close()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def _reader_factory(registry: Any, config: Any, opened: Any, db_path: str | None) -> Any:
    """Opens another reader of the same store, as `open_sink_reader` opened the first: one per serving thread."""
    cls = registry.get("sink", opened.sink).cls
    if db_path is not None:
        return lambda: cls.reader_at(db_path)
    sink_config = config.plugin_config("sink", opened.sink)
    return lambda: cls(sink_config if sink_config is not None else cls.Config()).reader()


def allowed_hosts(host: str) -> list[str] | None:
    """Host names a loopback server answers to (DNS rebinding): the loopback names and the address it is bound to;
    None (any) off loopback, where the token guards it."""
    from ..dashboard.security import is_loopback

    if not is_loopback(host):
        return None
    bound = host.strip("[]")
    names = ["127.0.0.1", "localhost", "::1", "[::1]", bound, f"[{bound}]" if ":" in bound else bound]
    return list(dict.fromkeys(names))


def _app(
    opened: Any, registry: Any, config: Any, config_path: str | None, window: str, token: str | None, host: str,
    open_reader: Any,
) -> tuple[Any, Any]:
    from ..dashboard.app import Dashboard, create_app
    from ..dashboard.candles import feed_candles
    from ..dashboard.store import Store
    from ..dashboard.views import Settings
    from .plugins import _plugin_rows

    budgets: dict[str, Any] = {}
    for name in config.enabled.get("synthesizer", []):
        plugin_config = config.plugin_config("synthesizer", name)
        for field in ("daily_token_budget", "daily_cost_budget"):
            if budgets.get(field) is None and getattr(plugin_config, field, None) is not None:
                budgets[field] = getattr(plugin_config, field)
    feed = registry.get("feed", config.candle_feed) if config.candle_feed else None
    live = feed is not None and feed.cls.live
    settings = Settings(
        location=opened.location, sink=opened.sink, config_path=config_path,
        hold_target=(config.stats.hold_target_min, config.stats.hold_target_max),
        stale_after_s=max(3 * config.engine.interval_seconds, 300.0) if live else 300.0, default_window=window, **budgets,
    )
    rows: list[dict[str, Any]] = []

    def plugin_rows() -> list[dict[str, Any]]:
        if not rows:
            rows.extend(_plugin_rows(config_path))
        return rows

    store = Store(open_reader, first=opened.reader)
    dash = Dashboard(store=store, settings=settings, candles=feed_candles(config, registry), plugin_rows=plugin_rows)
    return create_app(dash, token=token, allowed_hosts=allowed_hosts(host)), dash


def _server(app: Any) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
    config.load()  # the app, the HTTP and event-loop implementations, imported now
    return uvicorn.Server(config)
