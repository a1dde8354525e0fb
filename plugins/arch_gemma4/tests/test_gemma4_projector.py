"""The projector GGUF of a Gemma 4 checkpoint with towers, checked against transformers through mtmd."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gemma4_support import MULTIMODAL_FIXTURE

gguf = pytest.importorskip("gguf")

AUDIO_MIN_COSINE = 0.9999
IMAGE_MIN_COSINE = 0.9999
F16_MIN_COSINE = 0.9999
LOGIT_TOLERANCE = 0.1
MTMD_SCRIPT = Path(__file__).parent / "gemma4_mtmd.py"
ENGINE_SCRIPT = Path(__file__).parent / "gemma4_engine.py"


def _quiet(status: str, *, completed: int | None = None, total: int | None = None) -> None:
    """A progress callback that ignores progress."""


def _convert(source: Path, output_dir: Path, file_type: str = "F32") -> Any:
    from ollama_arch_gemma4.convert import Gemma4Converter

    return Gemma4Converter().convert(source, output_dir, file_type=file_type, progress=_quiet)


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def _edit_json(path: Path, section: str | None, key: str, value: Any) -> None:
    data = json.loads(path.read_text())
    (data[section] if section else data)[key] = value
    path.write_text(json.dumps(data))


def _run_mtmd(model: Path, projector: Path, out: Path, script: Path = MTMD_SCRIPT) -> Any:
    """What ``script`` computes for the fixture's media and prompts, in a separate process."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("PIL")
    args = [sys.executable, str(script), str(model), str(projector), str(MULTIMODAL_FIXTURE), str(out)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        pytest.fail(f"{script.name} failed with exit code {result.returncode}:\n{result.stderr[-4000:]}")
    return json.loads(out.read_text(encoding="utf-8"))


def _row_cosines(got: list[list[float]], want: list[list[float]]) -> np.ndarray:
    a, b = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert a.shape == b.shape
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def mm_fixture() -> Path:
    """The gemma4mm-a checkpoint (read-only)."""
    if not (MULTIMODAL_FIXTURE / "model.safetensors").is_file():
        pytest.skip(f"reference checkpoint {MULTIMODAL_FIXTURE} is not available")
    return MULTIMODAL_FIXTURE


@pytest.fixture(scope="module")
def mm_reference(mm_fixture: Path) -> dict[str, Any]:
    """What transformers computed for gemma4mm-a."""
    return json.loads((mm_fixture / "reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def converted(mm_fixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """gemma4mm-a converted at F32: text GGUF and projector GGUF."""
    return _convert(mm_fixture, tmp_path_factory.mktemp("gemma4mm-f32"))


@pytest.fixture(scope="module")
def mtmd_outputs(converted: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The F32 conversion's projected media and prompt logits, as llama.cpp computes them."""
    out = tmp_path_factory.mktemp("gemma4mm-mtmd") / "outputs.json"
    return _run_mtmd(converted.model_path, converted.projector_path, out)


def test_conversion_writes_a_projector(converted: Any) -> None:
    assert converted.model_path.name == "model-f32.gguf"
    assert converted.projector_path is not None and converted.projector_path.name == "mmproj-f32.gguf"
    assert "multimodal projector (audio and vision) written to mmproj-f32.gguf" in converted.notes
    assert sorted(p.name for p in converted.projector_path.parent.iterdir()) == ["mmproj-f32.gguf", "model-f32.gguf"]


def test_metadata(converted: Any) -> None:
    reader = gguf.GGUFReader(converted.projector_path)
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    expected = {
        "general.architecture": "clip",
        "general.type": "mmproj",
        "general.file_type": int(gguf.LlamaFileType.ALL_F32),
        "clip.has_vision_encoder": True,
        "clip.has_audio_encoder": True,
        "clip.use_gelu": True,
        "clip.vision.projector_type": "gemma4v",
        "clip.vision.projection_dim": 64,
        "clip.vision.patch_size": 16,
        "clip.vision.embedding_length": 32,
        "clip.vision.feed_forward_length": 64,
        "clip.vision.block_count": 2,
        "clip.vision.attention.head_count": 2,
        "clip.vision.attention.head_count_kv": 2,
        "clip.vision.attention.head_dim": 16,
        "clip.vision.image_mean": [0.0, 0.0, 0.0],
        "clip.vision.image_std": [1.0, 1.0, 1.0],
        "clip.vision.projector.scale_factor": 3,
        "clip.vision.image_max_tokens": 70,
        "clip.audio.projector_type": "gemma4a",
        "clip.audio.projection_dim": 64,
        "clip.audio.embedding_length": 32,
        "clip.audio.feed_forward_length": 128,
        "clip.audio.block_count": 2,
        "clip.audio.attention.head_count": 2,
        "clip.audio.num_mel_bins": 128,
    }
    assert {key: fields.get(key) for key in expected} == expected
    assert fields["clip.vision.attention.layer_norm_epsilon"] == pytest.approx(1e-6)
    assert "clip.projector_type" not in fields


def test_tensors(converted: Any, mm_fixture: Path) -> None:
    from ollama_arch_gemma4.checkpoint import Checkpoint

    checkpoint = Checkpoint(mm_fixture)
    tensors = {t.name: t for t in gguf.GGUFReader(converted.projector_path).tensors}
    towers = [
        n for n in checkpoint.entries if n.startswith(("model.audio_tower.", "model.vision_tower.", "model.embed_"))
    ]
    assert len(tensors) == len(towers) == 219
    assert not [t.name for t in tensors.values() if t.tensor_type != gguf.GGMLQuantizationType.F32]

    patch = np.asarray(checkpoint.raw("model.vision_tower.patch_embedder.input_proj.weight"))
    assert np.array_equal(tensors["v.patch_embd.weight"].data, patch.reshape(32, 16, 16, 3).transpose(0, 3, 1, 2))
    scale = np.asarray(checkpoint.raw("model.audio_tower.layers.1.self_attn.per_dim_scale"))
    np.testing.assert_allclose(tensors["a.blk.1.per_dim_scale.weight"].data, np.log1p(np.exp(scale)), rtol=1e-6)
    assert tensors["a.blk.0.conv_dw.weight"].data.shape == (32, 5)
    bound = float(np.asarray(checkpoint.raw("model.audio_tower.layers.0.lconv1d.linear_start.output_max")))
    assert list(tensors["a.blk.0.conv_pw1.output_max"].data) == [np.float32(bound)]
    norm = np.asarray(checkpoint.raw("model.audio_tower.layers.0.lconv1d.pre_layer_norm.weight"))
    assert np.array_equal(tensors["a.blk.0.conv_norm.weight"].data, norm)


def test_f16_keeps_float32_where_clip_needs_it(mm_fixture: Path, tmp_path: Path) -> None:
    result = _convert(mm_fixture, tmp_path, "F16")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(result.projector_path).tensors}
    for name in ("v.position_embd.weight", "a.conv1d.0.weight", "a.input_projection.weight", "a.blk.0.conv_dw.weight"):
        assert types[name] == "F32", name
    for name in ("a.blk.1.attn_q.input_max", "v.blk.0.ln1.weight", "v.std_scale", "a.pre_encode.out.bias"):
        assert types[name] == "F32", name
    for name in (
        "v.patch_embd.weight",
        "v.blk.0.ffn_gate.weight",
        "a.blk.0.attn_k_rel.weight",
        "mm.a.input_projection.weight",
    ):
        assert types[name] == "F16", name


def test_audio_embeddings_match_transformers(mtmd_outputs: dict[str, Any], mm_reference: dict[str, Any]) -> None:
    want = mm_reference["audio"]["embeddings"]
    assert len(mtmd_outputs["audio"]) == len(want) == 38
    assert _row_cosines(mtmd_outputs["audio"], want).min() >= AUDIO_MIN_COSINE


@pytest.mark.parametrize("name", ["image", "image_small"])
def test_image_embeddings_match_transformers(
    mtmd_outputs: dict[str, Any], mm_reference: dict[str, Any], name: str
) -> None:
    want = mm_reference[name]["embeddings"]
    assert len(mtmd_outputs[name]) == len(want) == mm_reference[name]["n_soft_tokens"]
    assert _row_cosines(mtmd_outputs[name], want).min() >= IMAGE_MIN_COSINE


def test_chat_prompts_match_transformers(mtmd_outputs: dict[str, Any], mm_reference: dict[str, Any]) -> None:
    for got, case in zip(mtmd_outputs["prompts"], mm_reference["prompts"], strict=True):
        assert got["ids"] == case["input_ids"], case["modality"]
        logits, want = np.asarray(got["last_logits"]), np.asarray(case["last_logits"])
        assert np.abs(logits - want).max() < LOGIT_TOLERANCE, case["modality"]
        assert int(np.argmax(logits)) == int(np.argmax(want))


def test_chat_prompts_through_the_runner_engine(
    converted: Any, mm_reference: dict[str, Any], tmp_path: Path
) -> None:
    """Media decoded as requests decode them, evaluated into the engine's slots between batch steps,
    give transformers' logits (f16 KV cache); a slot that evaluated the same image reuses its cache
    past it, up to the prompt's last token."""
    outputs = _run_mtmd(converted.model_path, converted.projector_path, tmp_path / "engine.json", ENGINE_SCRIPT)
    cases = {case["modality"]: case for case in mm_reference["prompts"]}
    for got in outputs:
        case = cases[got["modality"]]
        want = np.asarray(case["last_logits"])
        assert np.abs(np.asarray(got["last_logits"]) - want).max() < LOGIT_TOLERANCE, got["modality"]
        assert got["tokens"] == [int(np.argmax(want))]
        assert got["prompt_cached"] + got["prompt_eval_count"] == len(case["input_ids"])
    audio_ids, image_ids = cases["audio"]["input_ids"], cases["image"]["input_ids"]
    shared = next(i for i, (a, b) in enumerate(zip(audio_ids, image_ids)) if a != b)
    assert [o["prompt_cached"] for o in outputs] == [0, shared, len(image_ids) - 1]


def test_f16_projector_stays_close(mm_fixture: Path, mm_reference: dict[str, Any], tmp_path: Path) -> None:
    result = _convert(mm_fixture, tmp_path / "f16", "F16")
    outputs = _run_mtmd(result.model_path, result.projector_path, tmp_path / "outputs.json")
    for name in ("audio", "image", "image_small"):
        assert _row_cosines(outputs[name], mm_reference[name]["embeddings"]).min() >= F16_MIN_COSINE, name


def test_vision_only_checkpoint(mm_fixture: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    source = _copy(mm_fixture, tmp_path / "vision-only")
    tensors = load_file(source / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if "audio" not in k}, source / "model.safetensors")
    _edit_json(source / "config.json", None, "audio_config", None)
    result = _convert(source, tmp_path / "out")
    fields = {n: f.contents() for n, f in gguf.GGUFReader(result.projector_path).fields.items()}
    assert fields["clip.has_vision_encoder"] is True and fields["clip.has_audio_encoder"] is False
    assert not [key for key in fields if key.startswith("clip.audio.")]
    assert "multimodal projector (vision) written to mmproj-f32.gguf" in result.notes


@pytest.mark.parametrize(
    ("file", "section", "key", "value", "message"),
    [
        ("config.json", "audio_config", "attention_context_left", 14, "attention_context_left = 14: llama.cpp"),
        ("config.json", "audio_config", "conv_kernel_size", 7, "conv_kernel_size = 7: llama.cpp"),
        ("config.json", "audio_config", "hidden_act", "gelu", "hidden_act 'gelu'"),
        ("config.json", "audio_config", "subsampling_conv_channels", [64, 4], r"subsampling_conv_channels\[0\] = 64"),
        ("config.json", "vision_config", "position_embedding_size", 40, "position_embedding_size 40 is below 48"),
        ("config.json", "vision_config", "rope_parameters", {"rope_theta": 10000.0}, "theta 10000"),
        ("config.json", "vision_config", "num_hidden_layers", 3, r"missing tensors: v\.blk\.2\."),
        ("config.json", "text_config", "use_bidirectional_attention", None, "decodes the image tokens"),
        ("processor_config.json", "feature_extractor", "hop_length", 128, "hop_length = 128"),
        ("processor_config.json", "image_processor", "rescale_factor", 0.5, "rescale_factor 0.5"),
    ],
)
def test_refuses_towers_llama_cpp_would_run_differently(
    mm_fixture: Path, tmp_path: Path, file: str, section: str, key: str, value: Any, message: str
) -> None:
    from ollama_arch_gemma4.config import UnsupportedCheckpoint

    source = _copy(mm_fixture, tmp_path / "bad")
    _edit_json(source / file, section, key, value)
    with pytest.raises(UnsupportedCheckpoint, match=message):
        _convert(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_unknown_tower_tensor(mm_fixture: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    from ollama_arch_gemma4.config import UnsupportedCheckpoint

    source = _copy(mm_fixture, tmp_path / "bad")
    tensors = load_file(source / "model.safetensors")
    tensors["model.audio_tower.layers.0.self_attn.per_dim_key_scale"] = np.zeros(16, dtype=np.float32)
    save_file(tensors, source / "model.safetensors")
    with pytest.raises(UnsupportedCheckpoint, match=r"unexpected tensors: model\.audio_tower\.layers\.0\.self_attn"):
        _convert(source, tmp_path / "out")
