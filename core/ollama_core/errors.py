"""Errors that carry the HTTP status and message a client should see."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server cannot carry out; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
