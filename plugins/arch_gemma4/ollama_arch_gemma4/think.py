"""How a request's ``think`` value maps onto Gemma 4's on/off thinking switch."""

from __future__ import annotations

_OFF = frozenset({"", "false", "none", "off", "no", "0"})


def thinking_requested(think: bool | str | None) -> bool:
    """Whether thinking is on: ``True`` or any level string (``"low"``, ``"high"``, ...) turns it on."""
    if isinstance(think, str):
        return think.strip().lower() not in _OFF
    return bool(think)
