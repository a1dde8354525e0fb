"""Server-sent events: ``data:`` frames, named ``event:`` frames, and streams that start only once the
first inference event is in hand (so a failure before any output still gets its real status)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import msgspec
from litestar.response import Stream

from ollama_core.errors import RequestError

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
DONE = b"data: [DONE]\n\n"

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


def data_frame(value: Any) -> bytes:
    """``data: <json>`` and a blank line."""
    return b"data: " + _encoder.encode(value) + b"\n\n"


def event_frame(name: str, value: Any) -> bytes:
    """``event: <name>``, ``data: <json>`` and a blank line."""
    return b"event: " + name.encode() + b"\n" + data_frame(value)


async def open_events(events: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """Await the first event now, then return a generator that yields it and the rest.

    Errors raised before the first event propagate to the caller (and so to the client with their
    status). Closing the returned generator closes ``events``, which cancels the generation.
    """
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise RequestError(500, "no response from the model") from None
    except BaseException:
        await events.aclose()
        raise

    async def replay() -> AsyncGenerator[T, None]:
        async with aclosing(events):
            yield first
            async for event in events:
                yield event

    return replay()


def event_stream(frames: AsyncGenerator[bytes, None], on_error: Callable[[RequestError], bytes]) -> Stream:
    """A ``text/event-stream`` response of ``frames``; an error after it started becomes ``on_error``'s frame."""

    async def body() -> AsyncIterator[bytes]:
        async with aclosing(frames):
            try:
                async for frame in frames:
                    yield frame
            except RequestError as exc:
                yield on_error(exc)
            except Exception as exc:  # noqa: BLE001 - the stream has started; report and end it
                log.exception("stream failed")
                yield on_error(RequestError(500, str(exc) or type(exc).__name__))

    return Stream(body(), media_type=EVENT_STREAM, headers={"Cache-Control": "no-cache"})
