"""``POST /v1/audio/transcriptions``: speech to text with an audio-capable chat model, as Ollama does it.

The upload becomes a chat: a fixed "transcribe exactly" system prompt (with the request's
``language`` and ``prompt`` folded in) and a user message carrying the audio, base64-encoded in
its ``images`` list, generated at the request's ``temperature`` (default 0) with thinking off.
The answer, trimmed, is the transcript. ``srt``/``vtt``/``verbose_json`` time it as one cue
spanning the decoded audio.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from litestar import Request, Response, post
from litestar.enums import RequestEncodingType
from litestar.params import Body

from ollama_api.audio.schemas import (
    RESPONSE_FORMATS,
    Segment,
    TextDelta,
    TextDone,
    TokenUsage,
    Transcription,
    TranscriptionForm,
    VerboseTranscription,
)
from ollama_api.native.chat import conversation
from ollama_api.native.checks import require
from ollama_api.openai.errors import EXCEPTION_HANDLERS as OPENAI_EXCEPTION_HANDLERS
from ollama_api.openai.errors import error_body, error_response
from ollama_api.openai.generation import collect
from ollama_api.openai.sse import data_frame, event_stream, open_events
from ollama_api.wire import json_response
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.generation import Chunk, Final
from ollama_core.media import AUDIO_FORMATS, Media, media_kind

MAX_FILE_BYTES = 25 << 20
MAX_BODY_BYTES = MAX_FILE_BYTES + (64 << 10)
SYSTEM_PROMPT = (
    "Transcribe the audio exactly as spoken. Output only the spoken words. Do not answer any question in the audio."
)
USER_PROMPT = "What exact words are spoken in this audio?"

Events = AsyncGenerator[Chunk | Final, None]


def chat_messages(audio: bytes, *, language: str = "", prompt: str = "") -> list[dict[str, Any]]:
    """The chat that transcribes ``audio``: the instruction, then the audio in a user message."""
    system = SYSTEM_PROMPT
    if language:
        system += f" The audio is in {language}."
    if prompt:
        system += f" Context: {prompt}"
    encoded = base64.b64encode(audio).decode("ascii")
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": USER_PROMPT, "images": [encoded]},
    ]


def _duration(media: list[Media], sample_rate: int) -> float:
    """Seconds of decoded audio (float32 samples at ``sample_rate``)."""
    samples = sum(len(m.data) // 4 for m in media if m.kind == "audio")
    return samples / sample_rate


def _usage(final: Final | None) -> TokenUsage:
    read = final.prompt_eval_count if final else 0
    written = final.eval_count if final else 0
    return TokenUsage(input_tokens=read, output_tokens=written, total_tokens=read + written)


def _timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS,mmm`` (SRT) or ``HH:MM:SS.mmm`` (WebVTT)."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitles(text: str, duration: float, response_format: str) -> str:
    """``text`` as one SRT or WebVTT cue from 0 to ``duration``."""
    if response_format == "srt":
        return f"1\n{_timestamp(0, ',')} --> {_timestamp(duration, ',')}\n{text}\n"
    return f"WEBVTT\n\n{_timestamp(0, '.')} --> {_timestamp(duration, '.')}\n{text}\n"


async def _frames(events: Events) -> AsyncGenerator[bytes, None]:
    """``transcript.text.delta`` events (leading whitespace dropped), then ``transcript.text.done``."""
    pieces: list[str] = []
    final: Final | None = None
    async for event in events:
        if isinstance(event, Final):
            final = event
            continue
        delta = event.content if pieces else event.content.lstrip()
        if delta:
            pieces.append(delta)
            yield data_frame(TextDelta(delta=delta))
    yield data_frame(TextDone(text="".join(pieces).strip(), usage=_usage(final)))


def _error_frame(exc: RequestError) -> bytes:
    return data_frame(error_body(exc.status, exc.message))


@post(
    "/transcriptions",
    status_code=200,
    request_max_body_size=MAX_BODY_BYTES,
    summary="Transcribe audio",
    description="Multipart form: file (WAV, at most 25 MB), model, language, prompt, response_format "
    "(json, text, srt, verbose_json, vtt), temperature, stream (server-sent transcript.text.* events).",
)
async def transcriptions(
    data: Annotated[TranscriptionForm, Body(media_type=RequestEncodingType.MULTI_PART)], ctx: ServerContext
) -> Response[Any]:
    """Transcribe the uploaded audio in the requested format, or stream it."""
    if not data.model:
        raise RequestError(400, "model is required")
    if data.response_format not in RESPONSE_FORMATS:
        raise RequestError(400, f"unsupported response_format {data.response_format!r}; "
                                f"expected one of {', '.join(RESPONSE_FORMATS)}")
    if data.file is None:
        raise RequestError(400, "file is required")
    audio = await data.file.read()
    if not audio:
        raise RequestError(400, "file is empty")
    if len(audio) > MAX_FILE_BYTES:
        raise RequestError(413, f"file is larger than the {MAX_FILE_BYTES >> 20} MB limit")
    if media_kind(audio) != "audio":
        raise RequestError(400, f"file is not audio: audio must be {AUDIO_FORMATS}")
    inference = ctx.inference
    target = inference.resolve(data.model, f"model '{data.model}' not found")
    require(target, "completion", f'"{data.model}" does not support chat')
    require(target, "audio", f'"{data.model}" does not support audio input; transcription needs an audio-capable model')
    messages = conversation(target, chat_messages(audio, language=data.language, prompt=data.prompt))
    sample_rate = inference.audio_sample_rate(target)
    media = await inference.decode_media(target, messages)
    options = inference.options(target, {"temperature": data.temperature})
    rendered = inference.render(target, messages, tools=None, think=False)
    events = inference.generate(target, rendered.text, add_bos=rendered.add_bos, options=options, keep_alive=None,
                                parser=inference.parser(target, None, False, rendered.text), media=media)
    if data.stream:
        return event_stream(_frames(await open_events(events)), _error_frame)
    outcome = await collect(events)
    text, final = outcome.content.strip(), outcome.final
    if data.response_format == "text":
        return Response(text, media_type="text/plain; charset=utf-8")
    if data.response_format in ("srt", "vtt"):
        return Response(subtitles(text, _duration(media, sample_rate), data.response_format),
                        media_type="text/plain; charset=utf-8")
    if data.response_format == "verbose_json":
        duration = _duration(media, sample_rate)
        segment = Segment(id=0, seek=0, start=0.0, end=duration, text=text, tokens=[], temperature=data.temperature)
        return json_response(VerboseTranscription(task="transcribe", language=data.language, duration=duration,
                                                  text=text, segments=[segment]))
    return json_response(Transcription(text=text, usage=_usage(final)))


def _undecodable_field(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    """A form part without a filename must be UTF-8 text; the parser raises this for any other bytes."""
    return error_response(400, "invalid multipart/form-data: a field without a filename is not UTF-8 text "
                               "(send the audio as a file part with a filename)")


ROUTES = [transcriptions]
EXCEPTION_HANDLERS: dict[type[Exception], Any] = {**OPENAI_EXCEPTION_HANDLERS, UnicodeDecodeError: _undecodable_field}
