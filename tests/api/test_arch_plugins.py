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


def create_from_dir(server: Server, name: str, checkpoint: Path, tmp_path: Path, extra: str = "") -> str:
    modelfile = tmp_path / f"Modelfile.{name}"
    modelfile.write_text(f"FROM {checkpoint}\n{extra}")
    return server.cli("create", name, "-f", str(modelfile), timeout=300).stdout


def test_modernbert_checkpoint_converts_and_embeds_like_transformers(server: Server, tmp_path: Path) -> None:
    pytest.importorskip("ollama_arch_modernbert")
    out = create_from_dir(server, "mbert", FIXTURES / "modernbert-a", tmp_path)
    assert "converting model" in out and out.strip().endswith("success")
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
    out = create_from_dir(server, "gemma4-tiny", FIXTURES / "gemma4-a", tmp_path)
    assert out.strip().endswith("success")
    client = ollama.Client(host=server.url, timeout=120)
    info = client.show("gemma4-tiny")
    assert info.details.family == "gemma4" and "completion" in info.capabilities
    assert "thinking" in info.capabilities and "tools" in info.capabilities
    reference = json.loads((FIXTURES / "gemma4-a" / "reference.json").read_text())
    for case in reference["greedy"]:
        if case["min_margin"] < 0.05:
            continue
        reply = client.generate(model="gemma4-tiny", prompt=case["prompt_text"], raw=True,
                                options={"temperature": 0, "num_predict": len(case["continuation_ids"])})
        assert reply.response == case["continuation_text"], case["prompt_text"]
