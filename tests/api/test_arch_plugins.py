"""Architecture plugins end to end: ``ollama create`` from a safetensors checkpoint, then inference.

The reference outputs were computed by transformers (see the fixtures' README).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import ollama
import pytest

from conftest import ROOT, Server

FIXTURES = ROOT.parent / "shared" / "fixtures"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="reference fixtures are not beside the checkout")


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def create_from_dir(server: Server, name: str, checkpoint: Path, tmp_path: Path, *, verify: bool = False) -> str:
    modelfile = tmp_path / f"Modelfile.{name}"
    modelfile.write_text(f"FROM {checkpoint}\n")
    flags = ["--verify"] if verify else []
    return server.cli("create", name, "-f", str(modelfile), *flags, timeout=300).stdout


def test_modernbert_checkpoint_converts_and_embeds_like_transformers(server: Server, tmp_path: Path) -> None:
    pytest.importorskip("ollama_arch_modernbert")
    out = create_from_dir(server, "mbert", FIXTURES / "modernbert-a", tmp_path, verify=True)
    assert "converting model" in out and "verifying conversion" in out and out.strip().endswith("success")
    cosines = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.startswith("probe ")]
    assert len(cosines) == 4 and min(cosines) >= 0.9999
    client = ollama.Client(host=server.url, timeout=120)
    info = client.show("mbert")
    assert info.capabilities == ["embedding"] and info.details.family == "modern-bert"
    reference = json.loads((FIXTURES / "modernbert-a" / "reference.json").read_text())
    texts = [t["text"] for t in reference["texts"]]
    result = client.embed(model="mbert", input=texts)
    assert result.prompt_eval_count == sum(t["n_tokens"] for t in reference["texts"])
    for got, want in zip(result.embeddings, reference["texts"]):
        assert cosine(got, want["embedding"]) >= 0.9999, want["text"]
    r = httpx.post(server.url + "/api/generate", json={"model": "mbert", "prompt": "hi"})
    assert (r.status_code, r.json()) == (400, {"error": '"mbert" does not support generate'})


def test_gemma4_checkpoint_converts_and_continues_like_transformers(server: Server, tmp_path: Path) -> None:
    pytest.importorskip("ollama_arch_gemma4")
    out = create_from_dir(server, "gemma4-tiny", FIXTURES / "gemma4-a", tmp_path, verify=True)
    assert "verifying conversion" in out and out.strip().endswith("success")
    cosines = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.startswith("probe ")]
    assert len(cosines) == 4 and min(cosines) >= 0.9999, "last-position logits agree with the numpy reference"
    client = ollama.Client(host=server.url, timeout=120)
    info = client.show("gemma4-tiny")
    assert info.details.family == "gemma4" and "completion" in info.capabilities
    assert "thinking" in info.capabilities and "tools" in info.capabilities
    r = httpx.post(server.url + "/api/chat", json={"model": "gemma4-tiny", "think": False, "_debug_render_only": True,
                                                   "messages": [{"role": "user", "content": "Hi"}]})
    assert r.json()["_debug_info"]["rendered_template"].endswith("<|turn>user\nHi<turn|>\n<|turn>model\n")
    reply = client.chat(model="gemma4-tiny", messages=[{"role": "user", "content": "Hi"}],
                        options={"num_predict": 6, "temperature": 0})
    assert reply.done and reply.eval_count
    reference = json.loads((FIXTURES / "gemma4-a" / "reference.json").read_text())
    for case in reference["greedy"]:
        if case["min_margin"] < 0.05:
            continue
        reply = client.generate(model="gemma4-tiny", prompt=case["prompt_text"], raw=True,
                                options={"temperature": 0, "num_predict": len(case["continuation_ids"])})
        assert reply.response == case["continuation_text"], case["prompt_text"]


@pytest.mark.parametrize("quantization", ["q8_0", "q4_K_M"])
def test_create_quantizes_an_f16_model(server: Server, tmp_path: Path, quantization: str) -> None:
    pytest.importorskip("ollama_arch_gemma4")
    client = ollama.Client(host=server.url, timeout=120)
    if "gemma4-f16:latest" not in {m.model for m in client.list().models}:
        create_from_dir(server, "gemma4-f16", FIXTURES / "gemma4-a", tmp_path)
    assert client.show("gemma4-f16").details.quantization_level == "F16"
    statuses = [p.status for p in client.create(model=f"gemma4-{quantization}", from_="gemma4-f16",
                                                  quantize=quantization, stream=True)]
    assert f"quantizing F16 model to {quantization.upper()}" in statuses and statuses[-1] == "success"
    shown = server.cli("show", f"gemma4-{quantization}").stdout
    assert f"quantization        {quantization.upper()}" in shown
    reply = client.generate(model=f"gemma4-{quantization}", prompt="The quick brown fox", raw=True,
                            options={"temperature": 0, "num_predict": 4})
    assert reply.done and reply.eval_count


def test_quantize_refuses_quantized_sources_and_unknown_types(server: Server, smollm2: str) -> None:
    r = httpx.post(server.url + "/api/create", json={"model": "requant", "from": smollm2, "quantize": "q8_0"})
    assert r.status_code == 400 and "only supported for F16, BF16 and F32" in r.json()["error"]
    r = httpx.post(server.url + "/api/create", json={"model": "requant", "from": smollm2, "quantize": "q9_9"})
    assert r.status_code == 400 and "unsupported quantization type" in r.json()["error"]
