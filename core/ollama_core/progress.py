"""Progress lines streamed by long operations (create, pull, push), in Ollama's wire shape."""

from __future__ import annotations

from collections.abc import Callable

import msgspec


class Progress(msgspec.Struct, omit_defaults=True):
    """One status line: ``{"status": ..., "digest": ..., "total": ..., "completed": ...}``."""

    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0


ProgressSink = Callable[[Progress], None]
