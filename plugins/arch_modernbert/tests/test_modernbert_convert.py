"""Conversion of ModernBERT checkpoints to GGUF, and llama.cpp running the result."""

from __future__ import annotations

import json
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from ollama_arch_modernbert.config import load_config
from ollama_arch_modernbert.convert import NORMALIZE_KEY, ModernBertConverter, convert_checkpoint
from ollama_arch_modernbert.reference import ModernBertReference
from ollama_arch_modernbert.verify import cosine, llama_embeddings

COSINE_BOUND = {"F32": 0.999999, "F16": 0.99999, "BF16": 0.9999}
"""Lowest accepted cosine against transformers, per file type (see the test's docstring)."""


def _kv(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def _tensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    return {t.name: (t.tensor_type.name, np.array(t.data)) for t in gguf.GGUFReader(path).tensors}


def _rewrite_weights(checkpoint: Path, edit: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
    tensors = load_file(checkpoint / "model.safetensors")
    save_file(edit(tensors), checkpoint / "model.safetensors")


def _save_bf16(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Write float32 arrays as a BF16 safetensors file (truncating the low mantissa bits)."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = (np.ascontiguousarray(array, dtype=np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def test_gguf_layout(converted: Callable[[str], Path], fixture_dir: Path) -> None:
    path = converted("F32")
    kv = _kv(path)
    expected = {
        "general.architecture": "modern-bert",
        "modern-bert.context_length": 512,
        "modern-bert.embedding_length": 64,
        "modern-bert.block_count": 6,
        "modern-bert.feed_forward_length": 96,
        "modern-bert.attention.head_count": 4,
        "modern-bert.attention.causal": False,
        "modern-bert.attention.sliding_window": 16,
        "modern-bert.attention.sliding_window_pattern": [False, True, True, False, True, True],
        "modern-bert.rope.freq_base": 160000.0,
        "modern-bert.rope.freq_base_swa": 10000.0,
        "modern-bert.pooling_type": int(gguf.PoolingType.CLS),
        "modern-bert.hidden_activation": "gelu",
        NORMALIZE_KEY: False,
        "tokenizer.ggml.pre": "modern-bert",
    }
    assert {key: kv.get(key) for key in expected} == expected
    assert kv["modern-bert.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    tensors = _tensors(path)
    assert len(tensors) == 2 + 6 * 6 - 1 + 1
    assert "blk.0.attn_norm.weight" not in tensors
    assert all(kind == "F32" for kind, _ in tensors.values())
    weights = load_file(fixture_dir / "model.safetensors")
    np.testing.assert_array_equal(tensors["blk.2.ffn_up.weight"][1], weights["layers.2.mlp.Wi.weight"])
    np.testing.assert_array_equal(tensors["token_embd.weight"][1], weights["embeddings.tok_embeddings.weight"])


@pytest.mark.parametrize("file_type", ["F16", "BF16"])
def test_narrow_types_keep_norms_in_f32(converted: Callable[[str], Path], file_type: str) -> None:
    tensors = _tensors(converted(file_type))
    for name, (kind, data) in tensors.items():
        assert kind == ("F32" if data.ndim == 1 else file_type), name
    assert _kv(converted(file_type))["general.file_type"] == int(
        gguf.LlamaFileType.MOSTLY_F16 if file_type == "F16" else gguf.LlamaFileType.MOSTLY_BF16
    )


@pytest.mark.parametrize("file_type", ["F32", "F16", "BF16"])
def test_llama_cpp_matches_transformers(
    llama_outputs: Callable[[str], list[Any]], reference: dict[str, Any], file_type: str
) -> None:
    """llama.cpp's token ids equal HF's and its embeddings match transformers.

    Measured minimum cosines: F32 1 - 2e-8, F16 1 - 1.3e-7, BF16 1 - 4.4e-6. The bounds leave
    at least 20x headroom yet sit far above the smallest conversion defect known for this
    architecture (a layer-0 norm written as ones: about 0.998; a missing sliding window: 0.97).
    """
    outputs = llama_outputs(file_type)
    for item, got in zip(reference["texts"], outputs, strict=True):
        assert list(got.token_ids) == item["ids"], item["text"]
        assert cosine(got.embedding, item["embedding"]) >= COSINE_BOUND[file_type], item["text"]


def test_converter_object_writes_into_output_dir(fixture_dir: Path, tmp_path: Path) -> None:
    seen: list[tuple[str, int | None, int | None]] = []

    def progress(status: str, *, completed: int | None = None, total: int | None = None) -> None:
        seen.append((status, completed, total))

    result = ModernBertConverter().convert(fixture_dir, tmp_path / "out", file_type="F16", progress=progress)
    assert result.model_path == tmp_path / "out" / "model.gguf"
    assert result.projector_path is None
    assert any("pooling: cls" in note for note in result.notes)
    assert seen[-1][1] == seen[-1][2] > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.gguf"]


def test_unknown_file_type_is_refused(fixture_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file type"):
        convert_checkpoint(fixture_dir, tmp_path / "m.gguf", file_type="Q4_0")


def test_legacy_config_form_converts_identically(
    checkpoint_copy: Callable[..., Path], converted: Callable[[str], Path], fixture_dir: Path, tmp_path: Path
) -> None:
    def legacy(raw: dict[str, Any]) -> None:
        del raw["layer_types"], raw["rope_parameters"]
        raw.update(global_rope_theta=160000.0, local_rope_theta=10000.0, global_attn_every_n_layers=3)

    source = checkpoint_copy(config=legacy)
    assert load_config(source) == load_config(fixture_dir)
    path = convert_checkpoint(source, tmp_path / "legacy.gguf", file_type="F32").model_path
    modern, old = _kv(converted("F32")), _kv(path)
    del modern["general.name"], old["general.name"]
    assert old == modern
    assert path.stat().st_size == converted("F32").stat().st_size


def test_config_variants(checkpoint_copy: Callable[..., Path]) -> None:
    def flat_rope(raw: dict[str, Any]) -> None:
        raw["rope_parameters"] = {"rope_type": "default", "rope_theta": 5000.0}

    config = load_config(checkpoint_copy(config=flat_rope))
    assert (config.global_rope_theta, config.local_rope_theta) == (5000.0, 5000.0)

    def legacy_without_local_theta(raw: dict[str, Any]) -> None:
        del raw["rope_parameters"], raw["layer_types"]
        raw.update(global_rope_theta=80000.0, local_rope_theta=None, global_attn_every_n_layers=2)

    config = load_config(checkpoint_copy(config=legacy_without_local_theta))
    assert (config.global_rope_theta, config.local_rope_theta) == (80000.0, 80000.0)
    assert config.sliding_layers == (False, True, False, True, False, True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw["rope_parameters"]["full_attention"].update(rope_type="yarn"), "rope_type"),
        (lambda raw: raw.update(layer_types=["full_attention"] * 2), "layer_types"),
        (lambda raw: raw.update(hidden_activation="tanh"), "hidden_activation"),
        (lambda raw: raw.update(norm_bias=True), "norm_bias"),
        (lambda raw: raw.update(attention_bias=True), "attention_bias"),
        (lambda raw: raw.update(mlp_bias=True), "mlp_bias"),
    ],
)
def test_unrepresentable_configs_are_refused(
    checkpoint_copy: Callable[..., Path], tmp_path: Path, edit: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        convert_checkpoint(checkpoint_copy(config=edit), tmp_path / "out" / "m.gguf", file_type="F32")
    assert not (tmp_path / "out").exists()


def test_bias_tensors_are_refused(checkpoint_copy: Callable[..., Path], tmp_path: Path) -> None:
    source = checkpoint_copy()
    _rewrite_weights(source, lambda t: t | {"layers.1.attn.Wqkv.bias": np.zeros(192, dtype=np.float32)})
    with pytest.raises(ValueError, match=r"bias tensors \(layers\.1\.attn\.Wqkv\.bias\)"):
        convert_checkpoint(source, tmp_path / "m.gguf", file_type="F32")
    assert list(tmp_path.glob("m.gguf*")) == []


def test_unknown_and_missing_tensors_are_refused(checkpoint_copy: Callable[..., Path], tmp_path: Path) -> None:
    source = checkpoint_copy()
    _rewrite_weights(source, lambda t: t | {"layers.1.extra.weight": np.zeros(4, dtype=np.float32)})
    with pytest.raises(ValueError, match="does not know: layers.1.extra.weight"):
        convert_checkpoint(source, tmp_path / "m.gguf", file_type="F32")
    source = checkpoint_copy()
    _rewrite_weights(source, lambda t: {k: v for k, v in t.items() if k != "final_norm.weight"})
    with pytest.raises(ValueError, match="lacks tensors for output_norm.weight"):
        convert_checkpoint(source, tmp_path / "m.gguf", file_type="F32")


@pytest.mark.parametrize(
    ("modules", "pooling", "message"),
    [
        ([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
          {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
          {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}], None, "Dense"),
        (None, {"pooling_mode_max_tokens": True}, "pooling_mode_max_tokens"),
        (None, {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, "exactly one"),
        (None, {"pooling_mode": "weightedmean"}, "pooling_mode"),
    ],
)
def test_unrepresentable_pipelines_are_refused(
    checkpoint_copy: Callable[..., Path], tmp_path: Path, modules: Any, pooling: Any, message: str
) -> None:
    source = checkpoint_copy(**({"modules": modules} if modules else {}))
    if pooling is not None:
        (source / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        convert_checkpoint(source, tmp_path / "m.gguf", file_type="F32")


@pytest.mark.parametrize(("classifier_pooling", "expected"), [("mean", gguf.PoolingType.MEAN), ("cls", gguf.PoolingType.CLS)])
def test_pooling_falls_back_to_classifier_pooling(
    checkpoint_copy: Callable[..., Path], tmp_path: Path, classifier_pooling: str, expected: gguf.PoolingType
) -> None:
    source = checkpoint_copy(config=lambda raw: raw.update(classifier_pooling=classifier_pooling), modules=None)
    result = convert_checkpoint(source, tmp_path / "m.gguf", file_type="F32")
    kv = _kv(result.model_path)
    assert kv["modern-bert.pooling_type"] == int(expected)
    assert kv[NORMALIZE_KEY] is False
    assert any("classifier_pooling" in note for note in result.notes)


def test_sentence_transformers_pooling_wins_over_classifier_pooling(
    checkpoint_copy: Callable[..., Path], tmp_path: Path
) -> None:
    source = checkpoint_copy(config=lambda raw: raw.update(classifier_pooling="mean"))
    kv = _kv(convert_checkpoint(source, tmp_path / "m.gguf", file_type="F32").model_path)
    assert kv["modern-bert.pooling_type"] == int(gguf.PoolingType.CLS)


def test_mean_pooling_with_normalize_in_llama_cpp(
    checkpoint_copy: Callable[..., Path], tmp_path: Path, reference: dict[str, Any]
) -> None:
    pytest.importorskip("llama_cpp")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    source = checkpoint_copy(modules=modules)
    (source / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"}), encoding="utf-8")
    (source / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "search_query: "}}), encoding="utf-8"
    )
    result = convert_checkpoint(source, tmp_path / "m.gguf", file_type="F32")
    kv = _kv(result.model_path)
    assert kv["modern-bert.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert kv[NORMALIZE_KEY] is True
    assert any("search_query: " in note for note in result.notes)

    texts = [reference["texts"][i]["text"] for i in (1, 5)]
    model = ModernBertReference(source)
    for got in llama_embeddings(result.model_path, texts):
        assert np.linalg.norm(got.embedding) == pytest.approx(1.0, abs=1e-5)
        expected = model.run(got.token_ids).final
        assert np.linalg.norm(expected) == pytest.approx(1.0, abs=1e-6)
        assert cosine(got.embedding, expected) >= 0.99999


def test_masked_lm_layout_converts_to_the_same_tensors(
    checkpoint_copy: Callable[..., Path], converted: Callable[[str], Path], tmp_path: Path
) -> None:
    source = checkpoint_copy(config=lambda raw: raw.update(architectures=["ModernBertForMaskedLM"]))
    head = {
        "head.dense.weight": np.ones((64, 64), dtype=np.float32),
        "head.norm.weight": np.ones(64, dtype=np.float32),
        "decoder.bias": np.zeros(512, dtype=np.float32),
    }
    _rewrite_weights(source, lambda t: {f"model.{k}": v for k, v in t.items()} | head)
    path = convert_checkpoint(source, tmp_path / "m.gguf", file_type="F32").model_path
    got, want = _tensors(path), _tensors(converted("F32"))
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name][1], want[name][1])


def test_sharded_checkpoint(checkpoint_copy: Callable[..., Path], converted: Callable[[str], Path], tmp_path: Path) -> None:
    source = checkpoint_copy()
    tensors = load_file(source / "model.safetensors")
    (source / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, members in shards.items():
        save_file({n: tensors[n] for n in members}, source / file)
    weight_map = {n: file for file, members in shards.items() for n in members}
    (source / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}), encoding="utf-8")
    path = convert_checkpoint(source, tmp_path / "m.gguf", file_type="F16").model_path
    got, want = _tensors(path), _tensors(converted("F16"))
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name][1], want[name][1])


def test_bf16_checkpoint(checkpoint_copy: Callable[..., Path], fixture_dir: Path, tmp_path: Path) -> None:
    source = checkpoint_copy()
    weights = load_file(fixture_dir / "model.safetensors")
    _save_bf16(weights, source / "model.safetensors")
    truncated = {k: ((v.view(np.uint32) >> 16) << 16).view(np.float32) for k, v in weights.items()}

    f32 = _tensors(convert_checkpoint(source, tmp_path / "f32.gguf", file_type="F32").model_path)
    np.testing.assert_array_equal(f32["blk.1.ffn_up.weight"][1], truncated["layers.1.mlp.Wi.weight"])
    bf16 = _tensors(convert_checkpoint(source, tmp_path / "bf16.gguf", file_type="BF16").model_path)
    raw = bf16["blk.1.ffn_up.weight"][1].reshape(-1).view(np.uint16)
    np.testing.assert_array_equal(raw, (weights["layers.1.mlp.Wi.weight"].view(np.uint32) >> 16).reshape(-1))
    f16 = _tensors(convert_checkpoint(source, tmp_path / "f16.gguf", file_type="F16").model_path)
    np.testing.assert_array_equal(
        f16["blk.1.ffn_up.weight"][1], truncated["layers.1.mlp.Wi.weight"].astype(np.float16)
    )


def test_f32_to_bf16_rounds_to_nearest_even(checkpoint_copy: Callable[..., Path], tmp_path: Path) -> None:
    source = checkpoint_copy()
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.0e38, 1.0 + 2**-9], dtype=np.float32)
    embeddings = np.resize(values, (512, 64)).astype(np.float32)
    _rewrite_weights(source, lambda t: t | {"embeddings.tok_embeddings.weight": embeddings})
    path = convert_checkpoint(source, tmp_path / "m.gguf", file_type="BF16").model_path
    raw = _tensors(path)["token_embd.weight"][1].reshape(-1).view(np.uint16)[:6]
    assert [hex(v) for v in raw] == ["0x3f80", "0x3f80", "0x3f82", "0xc020", "0x7f62", "0x3f80"]


def test_f16_overflow_is_refused(checkpoint_copy: Callable[..., Path], tmp_path: Path) -> None:
    source = checkpoint_copy()
    _rewrite_weights(source, lambda t: t | {"layers.0.attn.Wo.weight": np.full((64, 64), 1e6, dtype=np.float32)})
    with pytest.raises(ValueError, match="not finite in F16"):
        convert_checkpoint(source, tmp_path / "m.gguf", file_type="F16")


def test_conversion_streams_one_tensor_at_a_time(fixture_dir: Path, tmp_path: Path) -> None:
    """Peak Python memory while converting is about one tensor, not the checkpoint."""
    source = tmp_path / "synthetic"
    source.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (source / name).write_bytes((fixture_dir / name).read_bytes())
    hidden, inner, layers, vocab = 512, 1024, 4, 1024
    config = json.loads((fixture_dir / "config.json").read_text(encoding="utf-8"))
    config.update(
        hidden_size=hidden, intermediate_size=inner, num_hidden_layers=layers, num_attention_heads=8, vocab_size=vocab,
        layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
    )
    (source / "config.json").write_text(json.dumps(config), encoding="utf-8")
    rng = np.random.default_rng(0)
    shapes = {"embeddings.tok_embeddings.weight": (vocab, hidden), "embeddings.norm.weight": (hidden,),
              "final_norm.weight": (hidden,)}
    for i in range(layers):
        shapes |= {f"layers.{i}.attn.Wqkv.weight": (3 * hidden, hidden), f"layers.{i}.attn.Wo.weight": (hidden, hidden),
                   f"layers.{i}.mlp_norm.weight": (hidden,), f"layers.{i}.mlp.Wi.weight": (2 * inner, hidden),
                   f"layers.{i}.mlp.Wo.weight": (hidden, inner)}
        if i:
            shapes[f"layers.{i}.attn_norm.weight"] = (hidden,)
    tensors = {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}
    largest = max(t.nbytes for t in tensors.values())
    total = sum(t.nbytes for t in tensors.values())
    save_file(tensors, source / "model.safetensors")
    del tensors

    for file_type in ("F32", "F16", "BF16"):
        tracemalloc.start()
        try:
            convert_checkpoint(source, tmp_path / f"{file_type}.gguf", file_type=file_type)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1.5 * largest, (file_type, peak, largest, total)
    assert total > 8 * largest
