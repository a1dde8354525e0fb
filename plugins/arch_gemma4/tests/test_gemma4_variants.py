"""The other Gemma 4 layouts (26B-style MoE, 31B-style dense with K=V, E2B-style double-wide KV
sharing): random checkpoints, converted and run in llama.cpp, against the numpy reference
(which itself matches transformers on gemma4-a)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gemma4_support import convert
from gemma4_synthetic import DENSE, MOE, SHARED_KV, write_checkpoint

VARIANT_TOLERANCE = 3e-2
"""Random weights give sharper activations than gemma4-a; llama.cpp's fp16 GELU table then costs
up to ~1.5e-2 (a conversion error shows as O(1))."""

PROMPTS = (
    "The quick brown fox jumps over the lazy dog and keeps running",
    "<|turn>user\nWhat is the weather in Paris?<turn|>\n<|turn>model\n",
)


def test_reference_matches_transformers(fixture_dir: Path, reference: dict[str, Any]) -> None:
    from ollama_arch_gemma4.reference import Gemma4Reference

    model = Gemma4Reference(fixture_dir)
    for case in reference["logits"]:
        assert np.abs(model.run(case["prompt_ids"]).final - np.array(case["last_logits"])).max() < 1e-4


@pytest.mark.parametrize(
    ("name", "text", "seed"), [("moe", MOE, 11), ("dense", DENSE, 12), ("shared_kv", SHARED_KV, 13)]
)
def test_variant_runs_like_reference(name: str, text: dict[str, Any], seed: int, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from gemma4_llama import LlamaRunner

    from ollama_arch_gemma4.reference import Gemma4Reference

    source = write_checkpoint(tmp_path / name, text, seed=seed)
    runner = LlamaRunner(convert(source, tmp_path / "out"))
    model = Gemma4Reference(source)
    try:
        for prompt in PROMPTS:
            ids = runner.tokenize(prompt)
            assert len(ids) > text["sliding_window"]
            got, expected = runner.last_logits(ids), model.run(ids).final
            assert np.abs(got - expected).max() < VARIANT_TOLERANCE, prompt
            assert np.argmax(got) == np.argmax(expected)
    finally:
        runner.close()


def test_variant_metadata(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    moe = convert(write_checkpoint(tmp_path / "moe", MOE, seed=1), tmp_path / "moe-out", "BF16")
    fields = {name: field.contents() for name, field in gguf.GGUFReader(moe).fields.items()}
    assert fields["gemma4.attention.head_count_kv"] == [2, 2, 1, 2, 2, 1]
    assert fields["gemma4.expert_count"] == 4
    assert fields["gemma4.expert_used_count"] == 2
    assert fields["gemma4.expert_feed_forward_length"] == 24
    assert fields["gemma4.embedding_length_per_layer_input"] == 0
    tensors = {t.name: t for t in gguf.GGUFReader(moe).tensors}
    assert tensors["blk.0.ffn_gate_up_exps.weight"].tensor_type == gguf.GGMLQuantizationType.BF16
    assert tensors["blk.0.ffn_gate_inp.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert "blk.2.attn_v.weight" not in tensors and "blk.1.attn_v.weight" in tensors

    shared = convert(write_checkpoint(tmp_path / "shared", SHARED_KV, seed=2), tmp_path / "shared-out")
    fields = {name: field.contents() for name, field in gguf.GGUFReader(shared).fields.items()}
    assert fields["gemma4.feed_forward_length"] == [96, 96, 96, 96, 192, 192, 192]
    assert fields["gemma4.attention.shared_kv_layers"] == 3
