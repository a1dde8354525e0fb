"""Encoding helpers shared by the surfaces: timestamps, NDJSON streams, threaded progress."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

import anyio
import msgspec
from litestar import MediaType, Response
from litestar.response import Stream

from ollama_core.errors import RequestError
from ollama_core.progress import Progress, ProgressSink

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
_encoder = msgspec.json.Encoder()


def format_time(moment: datetime) -> str:
    """RFC 3339 with up to 9 fractional digits and trailing zeros trimmed, as Ollama writes times."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    offset = moment.utcoffset()
    if not offset:
        return moment.isoformat(timespec="microseconds")[:-6].rstrip("0").rstrip(".") + "Z"
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        base += "." + f"{moment.microsecond:06d}".rstrip("0")
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{base}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


_second: list[Any] = [-1, ""]


def utc_now() -> str:
    """The current UTC time as :func:`format_time` writes it, with nanoseconds as Ollama's are;
    cheap enough to stamp every streamed chunk (the date part is formatted once a second)."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    if seconds != _second[0]:
        _second[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    if not nanos:
        return f"{_second[1]}Z"
    return f"{_second[1]}.{nanos:09d}".rstrip("0") + "Z"


def ndjson_line(value: Any) -> bytes:
    """One NDJSON line for a Struct or plain value."""
    return _encoder.encode(value) + b"\n"


def json_response(value: Any, status: int = 200) -> Response[Any]:
    """A JSON response with Ollama's content type."""
    return Response(_encoder.encode(value), status_code=status, media_type="application/json; charset=utf-8")


class _Failure(msgspec.Struct):
    status: int
    message: str


_DONE = object()


async def progress_response(work: Callable[[ProgressSink], None], *, stream: bool) -> Response[Any]:
    """Run blocking ``work`` in a worker thread and answer with its progress lines.

    Streaming: NDJSON of every :class:`Progress`; an error before the first line is a real
    error status, one after it is a final ``{"error": ...}`` line. Non-streaming: the last line,
    or the error with its status. The work runs to completion even if the client goes away, so
    the store is never left half-written.
    """
    items: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            work(items.put)
        except RequestError as exc:
            items.put(_Failure(exc.status, exc.message))
        except Exception as exc:  # noqa: BLE001 - reported to the client, logged here
            log.exception("operation failed")
            items.put(_Failure(500, str(exc) or type(exc).__name__))
        finally:
            items.put(_DONE)

    threading.Thread(target=run, name="ollama-progress", daemon=True).start()

    async def next_item() -> Any:
        return await anyio.to_thread.run_sync(items.get)

    first = await next_item()
    if isinstance(first, _Failure):
        return _error(first)
    if not stream:
        last = first
        while (item := await next_item()) is not _DONE:
            last = item
        if isinstance(last, _Failure):
            return _error(last)
        return json_response(Progress("success") if last is _DONE else last)

    async def lines() -> AsyncIterator[bytes]:
        item = first
        while item is not _DONE:
            if isinstance(item, _Failure):
                yield ndjson_line({"error": item.message})
                return
            yield ndjson_line(item)
            item = await next_item()

    return Stream(lines(), media_type=NDJSON)


def _error(failure: _Failure) -> Response[Any]:
    return Response({"error": failure.message}, status_code=failure.status, media_type=MediaType.JSON)


async def inference_response(
    events: AsyncIterator[Any],
    *,
    stream: bool,
    encode: Callable[[Any], Any],
    combine: Callable[[list[Any]], Any],
) -> Response[Any]:
    """Answer with an inference stream: NDJSON of ``encode(event)``, or ``combine(events)`` as one object.

    The first event is awaited before the response starts, so an error before any output
    (model load failure, bad options) gets its real status; a later error becomes a final
    ``{"error": ...}`` line with status 200, as Ollama sends it.
    """
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise RequestError(500, "no response from the model") from None
    if not stream:
        collected = [first]
        try:
            async for event in events:
                collected.append(event)
        finally:
            await events.aclose()
        return json_response(combine(collected))

    async def lines() -> AsyncIterator[bytes]:
        try:
            yield ndjson_line(encode(first))
            async for event in events:
                yield ndjson_line(encode(event))
        except RequestError as exc:
            yield ndjson_line({"error": exc.message})
        except Exception as exc:  # noqa: BLE001 - the stream has started; report and end it
            log.exception("stream failed")
            yield ndjson_line({"error": str(exc) or type(exc).__name__})
        finally:
            await events.aclose()

    return Stream(lines(), media_type=NDJSON)
