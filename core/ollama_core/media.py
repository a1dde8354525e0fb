"""Images and audio in requests: tell them apart, decode them, collect them from chat messages.

Contract for API surfaces::

    from ollama_core.media import collect_media
    media = collect_media(messages, sample_rate=inference.audio_sample_rate(target))
    rendered = inference.render(target, messages, tools=..., think=...)
    inference.generate(target, rendered.text, add_bos=rendered.add_bos, ..., media=media)

``collect_media(messages: Sequence[Mapping[str, Any]], *, sample_rate: int = 16000) -> list[Media]``
decodes every message's ``images`` entries (base64 strings as Ollama's wire carries them, or raw
bytes), in message order, which is the order renderers place them in. Audio travels in ``images``
too, as Ollama sends it; each item is sniffed. :class:`Media` is the runner's frame type
(``kind`` ``image`` or ``audio``; images stay encoded files, audio becomes float32 little-endian
mono PCM at ``sample_rate``). Bad base64, unsupported or undecodable data raise
:class:`~ollama_core.errors.RequestError` (400) naming the supported formats.

Rendered prompts hold :data:`MEDIA_MARKER` (llama.cpp's ``mtmd_default_marker()``) once per item
(see :meth:`ollama_core.inference.Inference.render`).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ollama_core.errors import RequestError
from ollama_core.runner.protocol import Media, MediaKind

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "MEDIA_MARKER",
    "Media",
    "MediaKind",
    "collect_media",
    "decode_base64",
    "decode_media",
    "mark_media",
    "media_kind",
    "place_raw_media",
]

MEDIA_MARKER = "<__media__>"
DEFAULT_SAMPLE_RATE = 16000
MAX_AUDIO_SECONDS = 600
MAX_IMAGE_PIXELS = 50_000_000
MAX_REQUEST_MEDIA_BYTES = 256 << 20
IMAGE_FORMATS = "PNG, JPEG, GIF, WebP or BMP"
AUDIO_FORMATS = "WAV (8, 16, 24 or 32-bit integer or 32/64-bit float PCM, mono or stereo)"
SUPPORTED = f"images must be {IMAGE_FORMATS}; audio must be {AUDIO_FORMATS}"

_WAV_SUBTYPES = frozenset({"PCM_U8", "PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"})
_PIL_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP"})
_RAW_IMAGE_TAG = re.compile(r"\[img-(\d+)\]")
_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _is_wav(data: bytes) -> bool:
    return data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE"


def _image_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def _audio_container(data: bytes) -> str | None:
    """The name of an audio container other than WAV that ``data`` starts like."""
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "MP3"
    if data.startswith(b"OggS"):
        return "Ogg"
    if data.startswith(b"fLaC"):
        return "FLAC"
    if data[4:8] == b"ftyp":
        return "MP4/M4A"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "WebM/Matroska"
    if data.startswith(b"FORM") and data[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    return None


def media_kind(item: str | bytes) -> MediaKind:
    """``audio`` for WAV (and other audio containers), else ``image``; ``item`` is raw bytes or base64.

    Only the first bytes are looked at, so renderers can call it cheaply for every item.
    """
    head = item[:16] if isinstance(item, bytes) else _b64_head(item)
    return "audio" if _is_wav(head) or _audio_container(head) else "image"


def _b64_head(text: str) -> bytes:
    try:
        return base64.b64decode(text[:16].encode("ascii", "ignore") + b"==")
    except (binascii.Error, ValueError):
        return b""


def decode_base64(text: str) -> bytes:
    """Standard base64 with padding (line breaks ignored); 400 ``illegal base64 data at input byte N``
    as Ollama answers."""
    data = text.encode("ascii", "replace").replace(b"\r", b"").replace(b"\n", b"")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        pass
    body = data.rstrip(b"=")
    bad = next((i for i, byte in enumerate(body) if byte not in _B64_CHARS), None)
    at = bad if bad is not None else len(data) - len(data) % 4 if len(data) % 4 else len(body)
    raise RequestError(400, f"illegal base64 data at input byte {at}")


def decode_media(data: bytes, *, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Media:
    """One media item for the runner: an image checked (WebP re-encoded as PNG) or WAV decoded to PCM."""
    if _is_wav(data):
        return Media(kind="audio", data=decode_wav(data, sample_rate))
    image = _image_format(data)
    if image is not None:
        return Media(kind="image", data=_check_image(data))
    container = _audio_container(data)
    if container is not None:
        raise RequestError(400, f"unsupported audio format {container}: audio must be {AUDIO_FORMATS}")
    raise RequestError(400, f"unsupported image or audio data: {SUPPORTED}")


def decode_wav(data: bytes, sample_rate: int) -> bytes:
    """WAV file bytes as float32 little-endian mono PCM at ``sample_rate`` (channels averaged)."""
    import numpy as np
    import soundfile
    import soxr

    try:
        info = soundfile.info(io.BytesIO(data))
        if info.format not in ("WAV", "WAVEX", "RF64") or info.subtype not in _WAV_SUBTYPES:
            raise RequestError(400, f"unsupported WAV encoding {info.subtype_info}: audio must be {AUDIO_FORMATS}")
        if info.frames <= 0 or info.samplerate <= 0:
            raise RequestError(400, "the audio is empty")
        if info.frames > MAX_AUDIO_SECONDS * info.samplerate:
            raise RequestError(400, f"audio longer than {MAX_AUDIO_SECONDS} seconds is not supported")
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc)
        raise RequestError(400, f"invalid WAV audio ({reason}): audio must be {AUDIO_FORMATS}") from None
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.clip(mono, -1.0, 1.0).astype("<f4").tobytes()


def _check_image(data: bytes) -> bytes:
    """``data`` if llama.cpp can decode it (WebP re-encoded as PNG); 400 if unreadable or too large."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            if image.format not in _PIL_FORMATS:
                raise RequestError(400, f"unsupported image format {image.format}: images must be {IMAGE_FORMATS}")
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise RequestError(400, f"the image is too large ({width}x{height} pixels)")
            if image.format != "WEBP":
                return data
            out = io.BytesIO()
            image.convert("RGBA" if "A" in image.getbands() else "RGB").save(out, format="PNG")
            return out.getvalue()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise RequestError(400, f"invalid image ({exc}): images must be {IMAGE_FORMATS}") from None


def collect_media(messages: Sequence[Mapping[str, Any]], *, sample_rate: int = DEFAULT_SAMPLE_RATE) -> list[Media]:
    """The decoded ``images`` entries of every message, in order (see the module docstring)."""
    media: list[Media] = []
    total = 0
    for message in messages:
        for item in message.get("images") or ():
            data = item if isinstance(item, bytes) else decode_base64(str(item))
            decoded = decode_media(data, sample_rate=sample_rate)
            total += len(decoded.data)
            if total > MAX_REQUEST_MEDIA_BYTES:
                raise RequestError(400, "the request carries too much image and audio data")
            media.append(decoded)
    return media


def mark_media(text: str, placeholders: Sequence[str]) -> str:
    """``text`` with each placeholder, in order and left to right, replaced by :data:`MEDIA_MARKER`."""
    out: list[str] = []
    at = 0
    for number, placeholder in enumerate(placeholders, 1):
        found = text.find(placeholder, at)
        if found < 0:
            raise RequestError(400, f"the prompt template has no place for image or audio item {number}")
        out.append(text[at:found])
        out.append(MEDIA_MARKER)
        at = found + len(placeholder)
    out.append(text[at:])
    return "".join(out)


def place_raw_media(prompt: str, media: Sequence[Media]) -> tuple[str, list[Media]]:
    """A raw prompt's ``[img-N]`` tags (the request's N-th item) as markers, with the media in tag order.

    Items no tag refers to are left out, as Ollama does for raw prompts.
    """
    placed: list[Media] = []

    def place(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index >= len(media):
            raise RequestError(400, f"invalid image index: {index}")
        placed.append(media[index])
        return MEDIA_MARKER

    return _RAW_IMAGE_TAG.sub(place, prompt), placed
