"""ISO-8601 UTC times, the one format V7 writes and the forms it reads (APIs, configs, users)."""

from __future__ import annotations

from datetime import datetime, timezone

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_utc(moment: datetime | int | float) -> str:
    """`2024-01-02T03:04:05Z`: UTC, second precision, sortable as text; unix seconds accepted too."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(int(moment), timezone.utc)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(ISO_FORMAT)


def parse_utc(text: str) -> datetime:
    """An ISO date or time (`2019-01-01`, `…T12:00Z`, fractions of any length) as an aware UTC datetime.

    A time without a zone is UTC. Raises ValueError naming the text when it is not ISO-8601.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"got {text!r}; expected an ISO date or time such as 2019-01-01 or 2019-01-01T12:00Z")
    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in value:  # Python 3.11 reads at most 6 fraction digits; exchanges send 9
        head, _, rest = value.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        value = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"got {text!r}; expected an ISO date or time such as 2019-01-01 or 2019-01-01T12:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def unix_seconds(moment: datetime | int | float) -> float:
    """A datetime (naive = UTC) as unix seconds; unix seconds pass through."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    return float(moment)
