"""Images and audio in requests: sniffing, WAV decoding, base64, and where prompts put them."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile

from ollama_core.descriptors import RenderRequest
from ollama_core.errors import RequestError
from ollama_core.media import (
    MAX_AUDIO_SECONDS,
    MEDIA_MARKER,
    Media,
    collect_media,
    decode_base64,
    decode_media,
    mark_media,
    media_kind,
    place_raw_media,
)
from ollama_core.prompt.default_renderer import DefaultRenderer

PNG = b"\x89PNG\r\n\x1a\n"


def wav(samples: np.ndarray, rate: int, subtype: str) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, subtype=subtype, format="WAV")
    return out.getvalue()


def png(width: int = 4, height: int = 3) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def pcm(media: Media) -> np.ndarray:
    assert media.kind == "audio"
    return np.frombuffer(media.data, dtype="<f4")


def test_the_marker_is_llama_cpps() -> None:
    from llama_cpp import mtmd_cpp

    assert mtmd_cpp.mtmd_default_marker().decode() == MEDIA_MARKER


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_encodings_decode_to_mono_float32(subtype: str, channels: int) -> None:
    rate = 16000
    t = np.arange(rate // 2) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    samples = tone if channels == 1 else np.stack([tone, tone], axis=1)
    got = pcm(decode_media(wav(samples, rate, subtype)))
    assert got.shape == tone.shape
    tolerance = 1e-2 if subtype == "PCM_U8" else 1e-4
    np.testing.assert_allclose(got, tone, atol=tolerance)


def test_stereo_is_averaged_and_resampled() -> None:
    rate = 44100
    t = np.arange(rate) / rate
    left, right = 0.6 * np.sin(2 * np.pi * 300 * t), np.zeros_like(t)
    got = pcm(decode_media(wav(np.stack([left, right], axis=1), rate, "PCM_24"), sample_rate=16000))
    assert got.shape == (16000,)
    want = 0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)
    assert np.abs(got[100:-100] - want[100:-100]).max() < 1e-3


def test_resampling_follows_the_projector_rate() -> None:
    samples = np.zeros(8000)
    assert pcm(decode_media(wav(samples, 8000, "PCM_16"), sample_rate=24000)).shape == (24000,)


def test_sniffing() -> None:
    audio = wav(np.zeros(160), 16000, "PCM_16")
    assert media_kind(audio) == media_kind(base64.b64encode(audio).decode()) == "audio"
    assert media_kind(PNG) == media_kind(base64.b64encode(png()).decode()) == "image"
    assert media_kind(b"OggS\x00\x02" + bytes(10)) == "audio"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"OggS\x00\x02" + bytes(30), "unsupported audio format Ogg"),
        (b"ID3\x04\x00" + bytes(30), "unsupported audio format MP3"),
        (b"fLaC" + bytes(30), "unsupported audio format FLAC"),
        (bytes(4) + b"ftypM4A " + bytes(20), "unsupported audio format MP4/M4A"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "invalid WAV audio"),
        (b"hello world", "unsupported image or audio data"),
    ],
)
def test_unsupported_data_names_the_formats(data: bytes, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_media(data)
    assert caught.value.status == 400
    assert message in caught.value.message and "WAV" in caught.value.message


def test_wav_other_encodings_and_lengths_are_refused() -> None:
    with pytest.raises(RequestError, match="unsupported WAV encoding"):
        decode_media(wav(np.zeros(100), 8000, "ULAW"))
    with pytest.raises(RequestError, match=f"longer than {MAX_AUDIO_SECONDS} seconds"):
        decode_media(wav(np.zeros(MAX_AUDIO_SECONDS * 100 + 1), 100, "PCM_U8"))


def test_images_are_checked() -> None:
    data = png()
    assert decode_media(data) == Media(kind="image", data=data)
    with pytest.raises(RequestError, match="invalid image"):
        decode_media(PNG + b"truncated")


def test_webp_becomes_png() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (5, 7), (0, 128, 255)).save(out, format="WEBP")
    media = decode_media(out.getvalue())
    assert media.kind == "image" and media.data.startswith(PNG)
    assert Image.open(io.BytesIO(media.data)).size == (5, 7)


def test_base64_errors_say_where() -> None:
    assert decode_base64(base64.b64encode(b"abc").decode()) == b"abc"
    assert decode_base64(base64.encodebytes(bytes(100)).decode()) == bytes(100)
    for text, at in (("ab!d", 2), ("abc", 0), ("YWJjZA", 4)):
        with pytest.raises(RequestError, match=f"^illegal base64 data at input byte {at}$"):
            decode_base64(text)


def test_collect_media_keeps_message_order() -> None:
    audio = wav(np.zeros(1600), 16000, "PCM_16")
    image = png()
    messages = [
        {"role": "user", "content": "a", "images": [base64.b64encode(image).decode()]},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c", "images": [base64.b64encode(audio).decode(), image]},
    ]
    assert [m.kind for m in collect_media(messages)] == ["image", "audio", "image"]


def test_markers_replace_placeholders_in_order() -> None:
    assert mark_media("x<|image|>y<|audio|>z<|image|>", ("<|image|>", "<|audio|>")) == (
        f"x{MEDIA_MARKER}y{MEDIA_MARKER}z<|image|>"
    )
    with pytest.raises(RequestError, match="no place for image or audio item 2"):
        mark_media("<|audio|><|image|>", ("<|image|>", "<|audio|>"))


def test_raw_prompts_refer_to_images_by_index() -> None:
    a, b = Media(kind="image", data=b"a"), Media(kind="audio", data=b"b")
    prompt, media = place_raw_media("[img-1] then [img-0] and [img-1]", [a, b])
    assert prompt == f"{MEDIA_MARKER} then {MEDIA_MARKER} and {MEDIA_MARKER}"
    assert media == [b, a, b]
    assert place_raw_media("no tags", [a]) == ("no tags", [])
    with pytest.raises(RequestError, match="invalid image index: 2"):
        place_raw_media("[img-2]", [a, b])


def test_default_renderer_tags_images_as_ollama_does() -> None:
    template = "{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}"
    messages = [
        {"role": "user", "content": "look", "images": ["AAAA", "BBBB"]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "and [img] here", "images": ["CCCC"]},
    ]
    rendered = DefaultRenderer().render(RenderRequest(messages=messages, go_template=template))
    assert rendered.text == "<user>[img-0][img-1]look<assistant>ok<user>and [img-2] here"
    assert rendered.media == ("[img-0]", "[img-1]", "[img-2]")
    jinja = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    rendered = DefaultRenderer().render(RenderRequest(messages=messages[:1], chat_template=jinja))
    assert rendered.text == "user: [img-0][img-1]look\n" and rendered.media == ("[img-0]", "[img-1]")
