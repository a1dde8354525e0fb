"""Conversion of Gemma 4 checkpoints, checked against transformers' outputs through llama.cpp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gemma4_support import MULTIMODAL_FIXTURE, convert

gguf = pytest.importorskip("gguf")

LOGIT_TOLERANCE_F32 = 1e-2
LOGIT_TOLERANCE_F16 = 5e-2


def _fields(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def test_prompt_ids_match_transformers(f32_llama: Any, reference: dict[str, Any]) -> None:
    for case in reference["greedy"]:
        assert f32_llama.tokenize(case["prompt_text"]) == case["prompt_ids"], case["prompt_text"]


def test_greedy_continuations_match_transformers(f32_llama: Any, reference: dict[str, Any]) -> None:
    for case in reference["greedy"]:
        assert f32_llama.greedy(case["prompt_ids"], len(case["continuation_ids"])) == case["continuation_ids"]


def test_last_logits_match_transformers(f32_llama: Any, reference: dict[str, Any]) -> None:
    deltas = [
        float(np.abs(f32_llama.last_logits(case["prompt_ids"]) - np.array(case["last_logits"])).max())
        for case in reference["logits"]
    ]
    assert max(deltas) < LOGIT_TOLERANCE_F32, deltas


def test_f16_conversion_stays_close(fixture_dir: Path, reference: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from gemma4_llama import LlamaRunner

    path = convert(fixture_dir, tmp_path, "F16")
    assert _fields(path)["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_F16)
    runner = LlamaRunner(path)
    try:
        for case, logits in zip(reference["greedy"], reference["logits"], strict=True):
            assert runner.tokenize(case["prompt_text"]) == case["prompt_ids"]
            delta = np.abs(runner.last_logits(case["prompt_ids"]) - np.array(logits["last_logits"])).max()
            assert delta < LOGIT_TOLERANCE_F16
            if case["min_margin"] > 0.1:
                assert runner.greedy(case["prompt_ids"], 12) == case["continuation_ids"]
    finally:
        runner.close()


def test_rendered_chat_has_one_bos(f32_llama: Any, f32_gguf: Path) -> None:
    from ollama_core.descriptors import RenderRequest

    from ollama_arch_gemma4.renderer import Gemma4Renderer

    template = _fields(f32_gguf)["tokenizer.chat_template"]
    request = RenderRequest(messages=[{"role": "user", "content": "Hi"}], chat_template=template, bos_token="<bos>")
    prompt = Gemma4Renderer().render(request)
    ids = f32_llama.tokenize(prompt.text, add_bos=prompt.add_bos)
    assert ids == [2, 5, 323, 321, 335, 280, 296, 311, 6, 280, 5, 361, 280]


def test_markers_survive_detokenization(f32_llama: Any) -> None:
    text = '<|channel>thought\nx<channel|><|tool_call>call:f{a:<|"|>b<|"|>}<tool_call|>'
    assert f32_llama.detokenize(f32_llama.tokenize(text, add_bos=False)) == text
    assert f32_llama.detokenize(f32_llama.tokenize("<|turn>model\nHi<turn|>", add_bos=False)) == "model\nHi"


def test_metadata(f32_gguf: Path) -> None:
    fields = _fields(f32_gguf)
    expected = {
        "general.architecture": "gemma4",
        "gemma4.block_count": 6,
        "gemma4.embedding_length": 64,
        "gemma4.feed_forward_length": 128,
        "gemma4.attention.head_count": 4,
        "gemma4.attention.head_count_kv": 2,
        "gemma4.attention.key_length": 32,
        "gemma4.attention.value_length": 32,
        "gemma4.attention.key_length_swa": 16,
        "gemma4.attention.value_length_swa": 16,
        "gemma4.attention.sliding_window": 8,
        "gemma4.attention.sliding_window_pattern": [True, False] * 3,
        "gemma4.attention.shared_kv_layers": 2,
        "gemma4.embedding_length_per_layer_input": 8,
        "gemma4.rope.freq_base": 1e6,
        "gemma4.rope.freq_base_swa": 1e4,
        "gemma4.rope.dimension_count": 32,
        "gemma4.rope.dimension_count_swa": 16,
        "gemma4.final_logit_softcapping": 30.0,
        "tokenizer.ggml.model": "gemma4",
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.unknown_token_id": 3,
        "tokenizer.ggml.eot_token_id": 6,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.ggml.add_space_prefix": False,
    }
    assert {key: fields.get(key) for key in expected} == expected
    assert "tokenizer.ggml.seperator_token_id" not in fields
    assert fields["tokenizer.chat_template"].startswith("{#")
    assert len(fields["tokenizer.ggml.tokens"]) == 549
    types = dict(zip(fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"], strict=True))
    for marker in (
        "<|channel>",
        "<channel|>",
        "<|tool_call>",
        "<tool_call|>",
        "<|tool_response>",
        "<tool_response|>",
        '<|"|>',
    ):
        assert types[marker] == 4, marker
    for marker in ("<bos>", "<eos>", "<|turn>", "<turn|>", "<|think|>", "<|tool>", "<tool|>", "<|image|>"):
        assert types[marker] == 3, marker
    assert types["<0x0A>"] == 6


def test_tensors(f32_gguf: Path) -> None:
    reader = gguf.GGUFReader(f32_gguf)
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 102
    assert "blk.4.attn_k.weight" not in tensors and "blk.3.attn_k.weight" in tensors
    assert list(tensors["rope_freqs.weight"].data) == [1.0] * 4 + [1e30] * 12
    assert tensors["token_embd.weight"].data.shape == (549, 64)
    assert tensors["per_layer_token_embd.weight"].data.shape == (549, 48)


def test_old_config_spelling_converts_identically(fixture_dir: Path, f32_gguf: Path, tmp_path: Path) -> None:
    source = _copy(fixture_dir, tmp_path / fixture_dir.name)
    config = json.loads((source / "config.json").read_text())
    del config["per_layer_config"], config["layer_types"]
    config |= {"global_head_dim": 32, "num_global_key_value_heads": 2, "_sliding_window_pattern": 2}
    (source / "config.json").write_text(json.dumps(config))
    (source / "chat_template.jinja").unlink()
    tokenizer_config = json.loads((source / "tokenizer_config.json").read_text())
    tokenizer_config["chat_template"] = (fixture_dir / "chat_template.jinja").read_text()
    (source / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))

    assert convert(source, tmp_path / "out").read_bytes() == f32_gguf.read_bytes()


def test_refuses_kv_sharing_llama_cpp_cannot_run(fixture_dir: Path, tmp_path: Path) -> None:
    from ollama_arch_gemma4.config import UnsupportedCheckpoint

    source = _copy(fixture_dir, tmp_path / "bad")
    config = json.loads((source / "config.json").read_text())
    sliding, full = "sliding_attention", "full_attention"
    config["layer_types"] = [sliding, full, full, sliding, sliding, full]
    config["per_layer_config"] = {str(i): {"head_dim": 32} for i in (1, 2, 5)}
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedCheckpoint, match=r"KV-sharing layout not supported by llama\.cpp"):
        convert(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_checkpoint_that_contradicts_config(fixture_dir: Path, tmp_path: Path) -> None:
    from ollama_arch_gemma4.config import UnsupportedCheckpoint

    source = _copy(fixture_dir, tmp_path / "bad")
    config = json.loads((source / "config.json").read_text())
    config["intermediate_size"] = 96
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedCheckpoint, match=r"mlp.gate_proj.weight: shape \[128, 64\], expected \[96, 64\]"):
        convert(source, tmp_path / "out")


def test_unknown_file_type_is_refused(fixture_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="F32, F16, BF16"):
        convert(fixture_dir, tmp_path, "Q4_0")


def test_text_part_of_multimodal_checkpoint(tmp_path: Path) -> None:
    if not (MULTIMODAL_FIXTURE / "model.safetensors").is_file():
        pytest.skip("multimodal fixture not available")
    pytest.importorskip("llama_cpp")
    from gemma4_llama import LlamaRunner

    from ollama_arch_gemma4.convert import Gemma4Converter
    from ollama_arch_gemma4.reference import Gemma4Reference

    result = Gemma4Converter().convert(MULTIMODAL_FIXTURE, tmp_path, file_type="F32", progress=lambda *a, **k: None)
    assert result.projector_path is not None and result.projector_path.name == "mmproj-f32.gguf"
    assert len(gguf.GGUFReader(result.model_path).tensors) == 102
    runner = LlamaRunner(result.model_path)
    try:
        ids = runner.tokenize("<|turn>user\nDescribe the weather<turn|>\n<|turn>model\n")
        expected = Gemma4Reference(MULTIMODAL_FIXTURE).run(ids).final
        assert np.abs(runner.last_logits(ids) - expected).max() < LOGIT_TOLERANCE_F32
    finally:
        runner.close()
