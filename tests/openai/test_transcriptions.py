"""``POST /v1/audio/transcriptions``, ``ollama transcribe`` and media paths in ``ollama run``, end to end.

The tiny Gemma 4 fixture (audio and vision towers) is converted on the session server; its
transcripts are arbitrary text, so they are checked against the same chat sent to ``/api/chat``.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import BadRequestError, OpenAI

from live_server import ROOT, Server, start_server

FIXTURE = ROOT.parent / "shared" / "fixtures" / "gemma4mm-a"
AUDIO = FIXTURE / "audio.wav"
IMAGE = FIXTURE / "image_small.png"
pytestmark = pytest.mark.skipif(not FIXTURE.is_dir(), reason="reference fixtures are not beside the checkout")
ENDPOINT = "/v1/audio/transcriptions"
OPENAPI = "/openapi/openapi.json"


def audio_seconds() -> float:
    with wave.open(str(AUDIO)) as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture(scope="module")
def model(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gemma4mm-a checkpoint converted on the server: greedy and short, so every answer is cheap and
    repeatable, and with a high presence penalty, which keeps the random model from answering only newlines."""
    pytest.importorskip("ollama_arch_gemma4")
    modelfile = tmp_path_factory.mktemp("gemma4mm") / "Modelfile"
    modelfile.write_text(f"FROM {FIXTURE}\nPARAMETER temperature 0\nPARAMETER num_predict 12\n"
                         "PARAMETER presence_penalty 100\n")
    server.cli("create", "gemma4mm-audio", "-f", str(modelfile), timeout=300)
    yield "gemma4mm-audio"
    httpx.post(server.url + "/api/generate", json={"model": "gemma4mm-audio", "keep_alive": 0}, timeout=60)


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def chat(server: Server, model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    r = httpx.post(server.url + "/api/chat", timeout=120, json={
        "model": model, "messages": messages, "stream": False, "think": False, "options": {"temperature": 0},
    })
    assert r.status_code == 200, r.text
    return r.json()


def post(server: Server, fields: dict[str, str], files: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(server.url + ENDPOINT, data=fields, files=files, timeout=120)


def assert_openai_error(r: httpx.Response, status: int, fragment: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and fragment in error["message"], error
    assert error["type"] == ("invalid_request_error" if status == 400 else error["type"])


def test_openai_client_transcribes_through_the_model(server: Server, model: str, client: OpenAI) -> None:
    from ollama_api.audio.transcriptions import chat_messages

    with AUDIO.open("rb") as audio:
        result = client.audio.transcriptions.create(model=model, file=audio)
    assert isinstance(result.text, str) and result.text
    reply = chat(server, model, chat_messages(AUDIO.read_bytes()))
    assert result.text == reply["message"]["content"].strip()
    assert result.usage.type == "tokens" and result.usage.output_tokens == reply["eval_count"]
    with AUDIO.open("rb") as audio:
        guided = client.audio.transcriptions.create(model=model, file=audio, language="de", prompt="Namen: Ada")
    reply = chat(server, model, chat_messages(AUDIO.read_bytes(), language="de", prompt="Namen: Ada"))
    assert guided.text == reply["message"]["content"].strip()


def test_every_response_format(server: Server, model: str, client: OpenAI) -> None:
    with AUDIO.open("rb") as audio:
        text = client.audio.transcriptions.create(model=model, file=audio, response_format="text")
    assert isinstance(text, str) and text
    files = {"file": ("audio.wav", AUDIO.read_bytes(), "audio/wav")}
    r = post(server, {"model": model, "response_format": "text"}, files)
    assert r.headers["content-type"].startswith("text/plain") and r.text == text
    r = post(server, {"model": model}, files)
    assert r.headers["content-type"].startswith("application/json") and r.json()["text"] == text
    assert set(r.json()) == {"text", "usage"}

    english = post(server, {"model": model, "response_format": "text", "language": "en"}, files).text
    verbose = post(server, {"model": model, "response_format": "verbose_json", "language": "en"}, files).json()
    seconds = audio_seconds()
    assert verbose["task"] == "transcribe" and verbose["language"] == "en" and verbose["text"] == english
    assert verbose["duration"] == pytest.approx(seconds, abs=0.01)
    (segment,) = verbose["segments"]
    assert segment["start"] == 0 and segment["end"] == pytest.approx(seconds, abs=0.01)
    assert segment["text"] == english
    with AUDIO.open("rb") as audio:
        parsed = client.audio.transcriptions.create(model=model, file=audio, response_format="verbose_json")
    assert parsed.duration == pytest.approx(seconds, abs=0.01) and parsed.segments[0].text == text

    srt = post(server, {"model": model, "response_format": "srt"}, files)
    assert srt.headers["content-type"].startswith("text/plain")
    assert srt.text == f"1\n00:00:00,000 --> 00:00:01,500\n{text}\n"
    vtt = post(server, {"model": model, "response_format": "vtt"}, files)
    assert vtt.text == f"WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n{text}\n"


def test_streaming_sends_deltas_then_the_whole_text(model: str, client: OpenAI) -> None:
    with AUDIO.open("rb") as audio:
        whole = client.audio.transcriptions.create(model=model, file=audio, response_format="text")
    with AUDIO.open("rb") as audio:
        events = list(client.audio.transcriptions.create(model=model, file=audio, stream=True))
    *deltas, done = events
    assert deltas and all(e.type == "transcript.text.delta" for e in deltas)
    assert done.type == "transcript.text.done" and done.text == whole
    assert "".join(e.delta for e in deltas).strip() == whole
    assert done.usage is not None and done.usage.output_tokens > 0


def test_request_errors_use_openai_error_bodies(server: Server, model: str, smollm2: str, client: OpenAI) -> None:
    audio = {"file": ("audio.wav", AUDIO.read_bytes(), "audio/wav")}
    assert_openai_error(post(server, {"model": model}, {"other": ("x.txt", b"x")}), 400, "file is required")
    assert_openai_error(post(server, {"language": "en"}, audio), 400, "model is required")
    assert_openai_error(post(server, {"model": model}, {"file": ("a.wav", b"", "audio/wav")}), 400, "file is empty")
    assert_openai_error(post(server, {"model": model, "response_format": "diarized_json"}, audio), 400,
                        "response_format")
    assert_openai_error(post(server, {"model": "no-such-model"}, audio), 404, "not found")
    assert_openai_error(post(server, {"model": smollm2}, audio), 400, "does not support audio")
    for name, header in (("a.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00"), ("a.ogg", b"OggS\x00\x02")):
        r = post(server, {"model": model}, {"file": (name, header + bytes(2048))})
        assert_openai_error(r, 400, "WAV")
    r = post(server, {"model": model}, {"file": ("image.png", IMAGE.read_bytes(), "image/png")})
    assert_openai_error(r, 400, "WAV")
    body = b'--b0\r\nContent-Disposition: form-data; name="file"\r\n\r\n\xff\xfe\r\n--b0--\r\n'
    r = httpx.post(server.url + ENDPOINT, content=body, headers={"content-type": "multipart/form-data; boundary=b0"})
    assert_openai_error(r, 400, "not UTF-8")
    too_big = b"RIFF" + bytes(26 << 20)
    r = post(server, {"model": model}, {"file": ("big.wav", too_big, "audio/wav")})
    assert r.status_code == 413 and "error" in r.json()
    with pytest.raises(BadRequestError) as info:
        client.audio.transcriptions.create(model=smollm2, file=AUDIO.open("rb"))
    assert "does not support audio" in info.value.message


def test_subtitle_cues_span_the_audio() -> None:
    from ollama_api.audio.transcriptions import subtitles

    assert subtitles("hi", 3725.5, "srt") == "1\n00:00:00,000 --> 01:02:05,500\nhi\n"
    assert subtitles("hi", 0.0004, "vtt") == "WEBVTT\n\n00:00:00.000 --> 00:00:00.000\nhi\n"


def test_cli_transcribes_files(server: Server, model: str, smollm2: str, client: OpenAI, tmp_path: Path) -> None:
    with AUDIO.open("rb") as audio:
        text = client.audio.transcriptions.create(model=model, file=audio, response_format="text")
    assert server.cli("transcribe", model, str(AUDIO)).stdout == text + "\n"
    second = tmp_path / "again.wav"
    second.write_bytes(AUDIO.read_bytes())
    out = server.cli("transcribe", model, str(AUDIO), str(second), "--language", "en").stdout
    with AUDIO.open("rb") as audio:
        english = client.audio.transcriptions.create(model=model, file=audio, response_format="text", language="en")
    assert out == f"==> {AUDIO} <==\n{english}\n\n==> {second} <==\n{english}\n"
    srt = server.cli("transcribe", model, str(AUDIO), "--format", "srt").stdout
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\n")
    verbose = json.loads(server.cli("transcribe", model, str(AUDIO), "--format", "verbose_json").stdout)
    assert verbose["text"] == text and verbose["task"] == "transcribe"
    failed = server.cli("transcribe", smollm2, str(AUDIO), check=False)
    assert failed.returncode == 1 and "does not support audio" in failed.stderr


def test_run_attaches_files_named_in_the_prompt(server: Server, model: str) -> None:
    result = server.cli("run", model, "--think=false", f"describe {IMAGE}")
    assert f"Added image '{IMAGE}'" in result.stderr
    picture = base64.b64encode(IMAGE.read_bytes()).decode()
    reply = chat(server, model, [{"role": "user", "content": "describe", "images": [picture]}])
    assert result.stdout.strip() == reply["message"]["content"].strip()
    piped = server.cli("run", model, "--think=false", input=f"what is said in {AUDIO}?")
    assert f"Added audio '{AUDIO}'" in piped.stderr
    sound = base64.b64encode(AUDIO.read_bytes()).decode()
    reply = chat(server, model, [{"role": "user", "content": "what is said in ?", "images": [sound]}])
    assert piped.stdout.strip() == reply["message"]["content"].strip()


def test_interactive_run_attaches_files_too(server: Server, model: str) -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "ollama_core.cli", "run", model, "--think=false"],
                               env=server.env, stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    os.close(secondary)
    os.write(primary, f"describe '{IMAGE}'\n/bye\n".encode())
    out, err = process.communicate(timeout=120)
    os.close(primary)
    assert process.returncode == 0, err
    assert f"Added image '{IMAGE}'" in err
    picture = base64.b64encode(IMAGE.read_bytes()).decode()
    reply = chat(server, model, [{"role": "user", "content": "describe", "images": [picture]}])
    assert reply["message"]["content"].strip() in out


def test_route_exists_only_when_a_plugin_offers_audio(server: Server, tmp_path: Path) -> None:
    pytest.importorskip("ollama_arch_gemma4")
    assert ENDPOINT in httpx.get(server.url + OPENAPI).json()["paths"]
    plain = start_server(tmp_path, {"OLLAMA_DISABLED_PLUGINS": "arch_gemma4"})
    try:
        r = httpx.post(plain.url + ENDPOINT, data={"model": "m"}, files={"file": ("a.wav", AUDIO.read_bytes())})
        assert r.status_code == 404
        assert ENDPOINT not in httpx.get(plain.url + OPENAPI).json()["paths"]
        assert "/v1/chat/completions" in httpx.get(plain.url + OPENAPI).json()["paths"]
        names = {p["name"] for p in json.loads(plain.cli("plugins", "--json").stdout)["plugins"]}
        assert "arch_gemma4" not in names and "ollama_api.audio.plugin" in names
        failed = plain.cli("transcribe", "m", str(AUDIO), check=False)
        assert failed.returncode == 1 and "none of its plugins offers audio input" in failed.stderr
    finally:
        plain.stop()
