"""Wire types of ``POST /v1/audio/transcriptions``: the multipart form and every response shape."""

from __future__ import annotations

import msgspec
from litestar.datastructures import UploadFile

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


class TranscriptionForm(msgspec.Struct):
    """The multipart form. ``model`` and a non-empty ``file`` are required (checked by the handler,
    so the errors read like Ollama's); OpenAI fields not listed here are accepted and ignored."""

    file: UploadFile | None = None
    model: str = ""
    language: str = ""
    prompt: str = ""
    response_format: str = "json"
    temperature: float = 0.0
    stream: bool = False


class TokenUsage(msgspec.Struct):
    """Tokens read (prompt and audio) and written."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    type: str = "tokens"


class Transcription(msgspec.Struct):
    """``response_format`` ``json``."""

    text: str
    usage: TokenUsage


class Segment(msgspec.Struct):
    """One timed piece of a verbose transcription (the scores are not computed and read 0)."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


class VerboseTranscription(msgspec.Struct):
    """``response_format`` ``verbose_json``; ``language`` is the one the request named, if any."""

    task: str
    language: str
    duration: float
    text: str
    segments: list[Segment]


class TextDelta(msgspec.Struct, tag_field="type", tag="transcript.text.delta"):
    """A streamed piece of the transcript."""

    delta: str


class TextDone(msgspec.Struct, tag_field="type", tag="transcript.text.done"):
    """The last streamed event: the whole transcript."""

    text: str
    usage: TokenUsage
