"""Images and audio in requests, end to end: a Gemma 4 checkpoint with towers created on the server.

The fixture's ``reference.json`` holds, per modality, the chat prompt transformers rendered, its
token ids with the media expanded as the HF processor expands them, and the last-position logits.
Their argmax is ``\\n`` for both prompts (a 4.8 and 6.1 logit margin), so the first token alone
does not show that the media reached the model; the prompt token counts do (the media take 38
and 70 of them), and the plugin's engine test compares the full logits.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from openai import OpenAI

from live_server import Server, start_server

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
MULTIMODAL = FIXTURES / "gemma4mm-a"
pytestmark = pytest.mark.skipif(not (MULTIMODAL / "model.safetensors").is_file(),
                                reason="the gemma4mm-a fixture is not beside the checkout")

GREEDY_ONE = {"num_predict": 1, "temperature": 0}
FRESH = {"keep_alive": 0}
"""Unload after the request, so the next one starts without a cached prompt and its
``prompt_eval_count`` counts every prompt token."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def create(server: Server, name: str, tmp: Path) -> str:
    pytest.importorskip("ollama_arch_gemma4")
    modelfile = tmp / f"Modelfile.{name}"
    modelfile.write_text(f"FROM {MULTIMODAL}\n")
    server.cli("create", name, "-f", str(modelfile), timeout=300)
    return name


def unload(server: Server, name: str) -> None:
    httpx.post(server.url + "/api/generate", json={"model": name, "keep_alive": 0}, timeout=60)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return json.loads((MULTIMODAL / "reference.json").read_text())


@pytest.fixture(scope="module")
def media(reference: dict[str, Any]) -> dict[str, str]:
    """The fixture's audio and image, base64-encoded as requests carry them."""
    return {name: b64((MULTIMODAL / reference[name]["file"]).read_bytes()) for name in ("audio", "image")}


@pytest.fixture(scope="module")
def gemma4mm(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gemma4mm-a created on the session server (text GGUF plus projector); unloaded afterwards."""
    name = create(server, "gemma4-mm", tmp_path_factory.mktemp("gemma4mm"))
    yield name
    unload(server, name)


def chat(server: Server, model: str, content: str, images: list[str], **extra: Any) -> httpx.Response:
    body = {"model": model, "stream": False, "think": False, "options": GREEDY_ONE,
            "messages": [{"role": "user", "content": content, "images": images}], **extra}
    return httpx.post(server.url + "/api/chat", json=body, timeout=180)


def media_tokens(case: dict[str, Any]) -> int:
    """How many tokens a reference prompt's media item takes: its embeddings and begin/end markers."""
    return sum(1 for kind in case["mm_token_type_ids"] if kind) + 2


def stereo_wav_24bit(rate: int = 44100, seconds: float = 1.0) -> bytes:
    """A stereo 24-bit PCM WAV: a chirp on the left, a tone on the right."""
    soundfile = pytest.importorskip("soundfile")
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * np.pi * (200 + 1800 * t) * t)
    right = 0.3 * np.sin(2 * np.pi * 440 * t)
    out = io.BytesIO()
    soundfile.write(out, np.stack([left, right], axis=1), rate, subtype="PCM_24", format="WAV")
    return out.getvalue()


def test_projector_capabilities(server: Server, gemma4mm: str) -> None:
    info = httpx.post(server.url + "/api/show", json={"model": gemma4mm}).json()
    assert {"completion", "vision", "audio"} <= set(info["capabilities"])


@pytest.mark.parametrize("modality", ["audio", "image"])
def test_chat_media_reach_the_model(
    server: Server, gemma4mm: str, reference: dict[str, Any], media: dict[str, str], modality: str
) -> None:
    case = next(c for c in reference["prompts"] if c["modality"] == modality)
    want = int(np.argmax(case["last_logits"]))
    expected = httpx.post(server.url + "/api/detokenize", json={"model": gemma4mm, "tokens": [want]}).json()
    debug = chat(server, gemma4mm, "What is this?", [media[modality]], _debug_render_only=True).json()
    assert debug["_debug_info"] == {"rendered_template": case["mtmd_prompt"], "image_count": 1}

    reply = chat(server, gemma4mm, "What is this?", [media[modality]], **FRESH)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["done"] and body["eval_count"] == 1
    assert body["prompt_eval_count"] == len(case["input_ids"]), "the media tokens were evaluated"
    assert body["message"]["content"] == expected["content"], "the first token is transformers' argmax"

    templated = httpx.post(server.url + "/api/generate", timeout=180, json={
        "model": gemma4mm, "prompt": "What is this?", "images": [media[modality]], "think": False, "stream": False,
        "options": GREEDY_ONE, **FRESH,
    }).json()
    assert templated["response"] == expected["content"]
    assert templated["prompt_eval_count"] == len(case["input_ids"])

    raw_prompt = case["prompt_text"].removeprefix("<bos>").replace(f"<|{modality}|>", "[img-0]")
    raw = httpx.post(server.url + "/api/generate", timeout=180, json={
        "model": gemma4mm, "prompt": raw_prompt, "raw": True, "images": [media[modality]], "stream": False,
        "options": GREEDY_ONE, **FRESH,
    }).json()
    assert raw["response"] == expected["content"]
    assert raw["prompt_eval_count"] == len(case["input_ids"])


def test_openai_image_and_audio_parts(server: Server, gemma4mm: str, reference: dict[str, Any],
                                      media: dict[str, str]) -> None:
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=180)
    reply = client.chat.completions.create(
        model=gemma4mm, max_tokens=1, temperature=0, reasoning_effort="none",
        messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + media["image"]}},
            {"type": "input_audio", "input_audio": {"data": media["audio"], "format": "wav"}},
            {"type": "text", "text": "What is this?"},
        ]}],
        extra_body=FRESH,
    )
    cases = {c["modality"]: c for c in reference["prompts"]}
    # Both in one turn: the image prompt plus the audio's embeddings and its two marker tokens.
    assert reply.usage.prompt_tokens == len(cases["image"]["input_ids"]) + media_tokens(cases["audio"])


def test_a_slot_reuses_its_cache_past_the_same_media(server: Server, gemma4mm: str, reference: dict[str, Any],
                                                     media: dict[str, str]) -> None:
    case = next(c for c in reference["prompts"] if c["modality"] == "image")
    first = chat(server, gemma4mm, "What is this?", [media["image"]]).json()
    assert first["prompt_eval_count"] == len(case["input_ids"])
    again = chat(server, gemma4mm, "What is this?", [media["image"]]).json()
    assert again["prompt_eval_count"] == 1, "only the last prompt token is evaluated again"
    assert again["message"] == first["message"]
    turn = {"role": "assistant", "content": first["message"]["content"]}
    follow = {"model": gemma4mm, "stream": False, "think": False, "options": GREEDY_ONE, "messages": [
        {"role": "user", "content": "What is this?", "images": [media["image"]]}, turn,
        {"role": "user", "content": "And now?"}]}
    cached = httpx.post(server.url + "/api/chat", json=follow, timeout=180).json()
    assert cached["prompt_eval_count"] < 20, "the image is not evaluated again"
    unload(server, gemma4mm)
    fresh = httpx.post(server.url + "/api/chat", json=follow, timeout=180).json()
    assert fresh["prompt_eval_count"] > len(case["input_ids"])
    assert cached["message"] == fresh["message"]
    # A different image at the same place is evaluated, not matched.
    other = chat(server, gemma4mm, "What is this?", [media["audio"]], **FRESH).json()
    assert other["prompt_eval_count"] > 30


def test_media_and_text_requests_run_side_by_side(
    tmp_path_factory: pytest.TempPathFactory, media: dict[str, str], reference: dict[str, Any]
) -> None:
    tmp = tmp_path_factory.mktemp("parallel-media")
    server = start_server(tmp, {"OLLAMA_NUM_PARALLEL": "2"})
    try:
        name = create(server, "gemma4-mm", tmp)
        results: dict[str, dict[str, Any]] = {}
        images = {"media": [media["image"]], "text": []}

        def run(kind: str) -> None:
            body = {"model": name, "stream": False, "think": False, "options": {"num_predict": 16, "temperature": 0},
                    "messages": [{"role": "user", "content": "What is this?", "images": images[kind]}]}
            results[kind] = httpx.post(server.url + "/api/chat", json=body, timeout=180).json()

        threads = [threading.Thread(target=run, args=(kind,)) for kind in images]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results["media"]["done"] and results["text"]["done"], results
        image_case = next(c for c in reference["prompts"] if c["modality"] == "image")
        assert results["media"]["prompt_eval_count"] == len(image_case["input_ids"])
        assert results["text"]["prompt_eval_count"] == len(image_case["input_ids"]) - media_tokens(image_case)
    finally:
        server.stop()


def test_model_without_projector_refuses_images(server: Server, smollm2: str, media: dict[str, str]) -> None:
    reply = chat(server, smollm2, "What is this?", [media["image"]])
    assert (reply.status_code, reply.json()) == (400, {"error": f'"{smollm2}" does not support vision'})
    reply = chat(server, smollm2, "What is this?", [media["audio"]])
    assert (reply.status_code, reply.json()) == (400, {"error": f'"{smollm2}" does not support audio'})


@pytest.mark.parametrize("header", [b"OggS\x00\x02" + bytes(22), b"ID3\x04\x00\x00" + bytes(22), b"fLaC" + bytes(30)])
def test_other_audio_containers_are_refused(server: Server, gemma4mm: str, header: bytes) -> None:
    reply = chat(server, gemma4mm, "Transcribe.", [b64(header)])
    assert reply.status_code == 400
    message = reply.json()["error"]
    assert "unsupported audio format" in message and "WAV" in message and "PCM" in message


def test_bad_base64_is_refused(server: Server, gemma4mm: str) -> None:
    reply = chat(server, gemma4mm, "What is this?", ["not base64!"])
    assert (reply.status_code, reply.json()) == (400, {"error": "illegal base64 data at input byte 3"})


def test_stereo_24_bit_44k_wav_is_accepted(server: Server, gemma4mm: str) -> None:
    reply = chat(server, gemma4mm, "What is this?", [b64(stereo_wav_24bit())], **FRESH)
    assert reply.status_code == 200, reply.text
    text_only = chat(server, gemma4mm, "What is this?", [], **FRESH).json()
    # One second at 16 kHz: 25 audio embeddings, between the <|audio> and <audio|> markers.
    assert reply.json()["prompt_eval_count"] == text_only["prompt_eval_count"] + 25 + 2
