"""Progress lines for pull and push, in Ollama's wording, with transfer updates throttled."""

from __future__ import annotations

import time

from ollama_core.digests import digest_hex
from ollama_core.progress import Progress, ProgressSink

INTERVAL = 0.06
"""Seconds between two transfer updates for the same blob (Ollama ticks every 60 ms)."""


class Reporter:
    """Sends status lines to a sink; an exception raised by the sink aborts the operation."""

    def __init__(self, sink: ProgressSink) -> None:
        self._sink = sink
        self._last: dict[str, float] = {}

    def status(self, text: str) -> None:
        """A plain status line such as ``pulling manifest`` or ``success``."""
        self._sink(Progress(status=text))

    def transfer(self, verb: str, digest: str, total: int, completed: int, *, force: bool = False) -> None:
        """``<verb> <12 hex>`` with sizes; skipped if the last one for ``digest`` was under 60 ms ago."""
        now = time.monotonic()
        if not force and now - self._last.get(digest, -INTERVAL) < INTERVAL:
            return
        self._last[digest] = now
        status = f"{verb} {digest_hex(digest)[:12]}"
        self._sink(Progress(status=status, digest=digest, total=total, completed=completed))
