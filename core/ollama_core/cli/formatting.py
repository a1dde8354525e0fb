"""Human-readable sizes and times, as Ollama's CLI prints them."""

from __future__ import annotations

import math
from datetime import datetime, timezone

_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))


def human_bytes(size: int) -> str:
    """``98 MB``, ``2.0 GB``-style sizes in decimal units."""
    for unit, scale in _UNITS:
        if size >= scale:
            value = size / scale
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def human_since(moment: datetime, now: datetime | None = None) -> str:
    """``2 minutes ago``-style relative times."""
    now = now or datetime.now(timezone.utc)
    seconds = (now - moment).total_seconds()
    if seconds < 1:
        return "Less than a second ago"
    if seconds < 60:
        return f"{_plural(int(seconds), 'second')} ago"
    if seconds < 120:
        return "About a minute ago"
    if seconds < 3600:
        return f"{_plural(int(seconds // 60), 'minute')} ago"
    if seconds < 7200:
        return "About an hour ago"
    if seconds < 86400:
        return f"{_plural(int(seconds // 3600), 'hour')} ago"
    if seconds < 7 * 86400:
        return f"{_plural(int(seconds // 86400), 'day')} ago"
    if seconds < 30 * 86400:
        return f"{_plural(int(seconds // (7 * 86400)), 'week')} ago"
    if seconds < 365 * 86400:
        return f"{_plural(int(seconds // (30 * 86400)), 'month')} ago"
    return f"{_plural(int(seconds // (365 * 86400)), 'year')} ago"


def table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns separated by at least four spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["    ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)
