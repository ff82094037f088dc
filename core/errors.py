"""Turning exceptions into the one-line messages V7 shows and logs."""

from __future__ import annotations

from typing import Any


def one_line(exc: BaseException, limit: int = 5) -> str:
    """A pydantic ValidationError as `field: message; ...` on one line; any other error as `Type: message`."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            items: list[dict[str, Any]] = errors(include_url=False)
        except TypeError:  # an `errors` that is not pydantic's
            items = []
        if items:
            parts = [f"{'.'.join(map(str, item['loc'])) or 'value'}: {item['msg']}" for item in items[:limit]]
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            return "; ".join(parts) + more
    return f"{type(exc).__name__}: {exc}"
