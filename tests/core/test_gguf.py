"""The GGUF reader, details, model_info, capabilities, and the reader's resistance to hostile files."""

from __future__ import annotations

import os
import re
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import msgspec
import pytest
from gguf_factory import (
    DEFAULT_TENSORS,
    QT,
    VT,
    TensorSpec,
    Typed,
    arch_kv,
    array_payload,
    build,
    gguf_string,
    kv,
    kv_str,
    kv_u32,
    tensor_info,
    write_gguf,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollama_core.gguf import (
    GGUFError,
    GGUFFile,
    GGUFLimits,
    GGUFValueType,
    derive_capabilities,
    human_number,
    model_details,
    model_info,
    read_gguf,
    tensor_list,
)

SMOLLM2 = Path(__file__).resolve().parents[2] / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

LONG_TOKENS = [f"tok{i}" for i in range(100)]


def _read_bytes(tmp_path: Path, data: bytes, name: str = "m.gguf", **kwargs: Any) -> GGUFFile:
    path = tmp_path / name
    path.write_bytes(data)
    return read_gguf(path, **kwargs)


def _rich_file(path: Path) -> Path:
    return write_gguf(
        path,
        metadata={
            "general.name": "Tiny",
            "general.file_type": 3,
            "llama.context_length": 4096,
            "llama.embedding_length": 64,
            "llama.rope.freq_base": 10000.0,
            "llama.attention.layer_norm_rms_epsilon": 1e-5,
            "u8": Typed(7, VT.UINT8),
            "i8": Typed(-7, VT.INT8),
            "u16": Typed(65535, VT.UINT16),
            "i16": Typed(-32768, VT.INT16),
            "i32": Typed(-5, VT.INT32),
            "u64": Typed(2**64 - 1, VT.UINT64),
            "i64": Typed(-(2**63), VT.INT64),
            "f64": Typed(0.1, VT.FLOAT64),
            "flag": True,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.tokens": LONG_TOKENS,
            "tokenizer.ggml.scores": Typed([0.5] * 80, VT.ARRAY, VT.FLOAT32),
            "tokenizer.ggml.token_type": Typed(list(range(100)), VT.ARRAY, VT.INT32),
            "tokenizer.ggml.eos_token_ids": Typed([1, 2, 3], VT.ARRAY, VT.UINT32),
            "bools": Typed([True, False, True], VT.ARRAY, VT.BOOL),
            "nested": Typed([[1, 2], [3]], VT.ARRAY, VT.ARRAY),
            "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
        },
    )


# --- the real SmolLM2 file -------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> GGUFFile:
    if not SMOLLM2.is_file():
        pytest.skip(f"SmolLM2 GGUF not present at {SMOLLM2}")
    return read_gguf(SMOLLM2)


def test_smollm2_reads_quickly_and_lazily(smollm2: GGUFFile) -> None:
    start = time.perf_counter()
    read_gguf(SMOLLM2)
    assert time.perf_counter() - start < 1.0
    assert smollm2.version == 3
    assert smollm2.alignment == 32
    assert smollm2.file_size == SMOLLM2.stat().st_size
    assert len(smollm2.tensors) == 272
    assert smollm2.architecture == "llama"
    tokens = smollm2.metadata.array_info("tokenizer.ggml.tokens")
    assert tokens is not None and tokens.count == 49152 and tokens.element_type is GGUFValueType.STRING
    assert not smollm2.metadata.is_loaded("tokenizer.ggml.tokens")
    values = smollm2.metadata["tokenizer.ggml.tokens"]
    assert len(values) == 49152 and values[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    embd = smollm2.tensors[0]
    assert (embd.name, embd.type_name, embd.shape, embd.offset) == ("token_embd.weight", "Q8_0", (576, 49152), 0)
    assert embd.nbytes == 576 * 49152 // 32 * 34


def test_smollm2_details_and_capabilities(smollm2: GGUFFile) -> None:
    details = model_details(smollm2)
    assert details.architecture == details.family == "llama"
    assert details.families == ["llama"]
    assert details.parameter_count == 134_515_008
    assert details.parameter_size == "134.52M"
    assert details.quantization_level == "Q4_1"
    assert details.context_length == 8192
    assert details.embedding_length == 576
    assert details.chat_template is not None and "<|im_start|>" in details.chat_template
    assert derive_capabilities(smollm2) == ["completion"]


def test_smollm2_model_info(smollm2: GGUFFile) -> None:
    info = model_info(smollm2, verbose=False)
    assert list(info) == sorted(info)
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    assert info["tokenizer.ggml.tokens"] == [] and info["tokenizer.ggml.merges"] == []
    assert info["general.languages"] == ["en"]
    assert info["general.parameter_count"] == 134_515_008
    assert info["llama.attention.layer_norm_rms_epsilon"] == 1e-05
    assert msgspec.json.encode(info)
    verbose = model_info(smollm2, verbose=True)
    assert len(verbose["tokenizer.ggml.merges"]) == 48900
    tensors = tensor_list(smollm2)
    assert tensors[0] == {"name": "token_embd.weight", "type": "Q8_0", "shape": [576, 49152]}


# --- valid files written with gguf.GGUFWriter ---------------------------------------------------


def test_values_of_every_type_match_gguf_py(tmp_path: Path) -> None:
    path = _rich_file(tmp_path / "rich.gguf")
    parsed = read_gguf(path)
    reference = gguf.GGUFReader(path)
    meta = parsed.metadata
    assert meta["u8"] == 7 and meta["i8"] == -7 and meta["u16"] == 65535 and meta["i16"] == -32768
    assert meta["i32"] == -5 and meta["u64"] == 2**64 - 1 and meta["i64"] == -(2**63) and meta["f64"] == 0.1
    assert meta["flag"] is True and meta["llama.attention.layer_norm_rms_epsilon"] == 1e-05
    assert meta["bools"] == [True, False, True]
    assert meta["nested"] == [[1, 2], [3]]
    assert meta.value_type("nested") is GGUFValueType.ARRAY
    assert not meta.is_loaded("tokenizer.ggml.tokens") and meta.is_loaded("tokenizer.ggml.eos_token_ids")
    assert meta["tokenizer.ggml.tokens"] == LONG_TOKENS
    assert meta["tokenizer.ggml.token_type"] == list(range(100))
    assert meta["tokenizer.ggml.scores"] == [0.5] * 80
    assert list(meta) == [k for k in reference.fields if not k.startswith("GGUF.")]
    assert [t.name for t in parsed.tensors] == [t.name for t in reference.tensors]
    for ours, theirs in zip(parsed.tensors, reference.tensors, strict=True):
        assert parsed.data_offset + ours.offset == theirs.data_offset
        assert ours.nbytes == theirs.n_bytes
        assert ours.shape == tuple(int(d) for d in theirs.shape)
        assert ours.ggml_type == int(theirs.tensor_type)


def test_details_and_model_info_of_a_small_file(tmp_path: Path) -> None:
    parsed = read_gguf(_rich_file(tmp_path / "rich.gguf"))
    details = model_details(parsed)
    expected_params = sum(_elements(t.shape) for t in DEFAULT_TENSORS)
    assert details.parameter_count == expected_params
    assert details.parameter_size == human_number(expected_params) == "5K"
    assert (details.quantization_level, details.context_length, details.embedding_length) == ("Q4_1", 4096, 64)
    info = model_info(parsed, verbose=False)
    assert info["tokenizer.ggml.tokens"] == [] and info["tokenizer.ggml.scores"] == []
    assert info["tokenizer.ggml.eos_token_ids"] == [1, 2, 3]
    assert info["general.parameter_count"] == expected_params
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    verbose = model_info(parsed, verbose=True)
    assert verbose["tokenizer.ggml.tokens"] == LONG_TOKENS
    assert msgspec.json.decode(msgspec.json.encode(verbose))["nested"] == [[1, 2], [3]]


def test_quantization_level_without_file_type(tmp_path: Path) -> None:
    tensors = [TensorSpec(f"blk.{i}.w", (64, 2), int(QT.Q4_K)) for i in range(2)] + [
        TensorSpec(f"blk.{i}.norm", (64,), int(QT.F32)) for i in range(3)
    ]
    parsed = read_gguf(write_gguf(tmp_path / "q.gguf", tensors=tensors))
    assert model_details(parsed).quantization_level == "Q4_K_M"
    unknown = read_gguf(write_gguf(tmp_path / "u.gguf", metadata={"general.file_type": 999}, tensors=tensors))
    assert model_details(unknown).quantization_level == "Q4_K_M"
    empty = read_gguf(write_gguf(tmp_path / "e.gguf", tensors=()))
    assert model_details(empty).quantization_level == "unknown"
    assert model_details(empty).parameter_size == "0"


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1K"),
        (1_000_000, "1M"),
        (125_000_000, "125M"),
        (134_515_008, "134.52M"),
        (500_500_000, "500.50M"),
        (1_000_000_000, "1B"),
        (2_850_000_000, "2.9B"),
        (3_212_749_888, "3.2B"),
        (8_030_261_248, "8.0B"),
        (1_000_000_000_000, "1000B"),
    ],
)
def test_human_number_matches_ollama(count: int, expected: str) -> None:
    assert human_number(count) == expected


# --- capabilities -----------------------------------------------------------------------------

QWEN_GO_TEMPLATE = """{{- if .Messages }}
{{- if .Tools }}<tools>{{ range .Tools }}{{ . }}{{ end }}</tools>{{ end }}
{{- range $i, $_ := .Messages }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking -}}
<think>{{ .Thinking }}</think>
{{ end -}}
{{ .Content }}<|im_end|>
{{ end }}
{{- end }}
{{- else }}{{ .Prompt }}{{ end }}"""


def _caps(tmp_path: Path, metadata: dict[str, Any], arch: str = "llama", **kwargs: Any) -> list[str]:
    path = tmp_path / f"{arch}-{len(list(tmp_path.iterdir()))}.gguf"
    parsed = read_gguf(write_gguf(path, arch=arch, metadata=metadata))
    return derive_capabilities(parsed, **kwargs)


def test_embedding_model(tmp_path: Path) -> None:
    assert _caps(tmp_path, {"bert.pooling_type": 1}, arch="bert") == ["embedding"]


def test_jinja_templates(tmp_path: Path) -> None:
    tools = "{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
    assert _caps(tmp_path, {"tokenizer.chat_template": tools}) == ["tools", "completion"]
    think = "{% for m in messages %}<think>{{ m.reasoning }}</think>{{ m.content }}{% endfor %}"
    assert _caps(tmp_path, {"tokenizer.chat_template": think}) == ["thinking", "completion"]
    split = "{% set c = message.content.split('</think>')[-1] %}{{ c }}"
    assert _caps(tmp_path, {"tokenizer.chat_template": split}) == ["thinking", "completion"]
    assert _caps(tmp_path, {"tokenizer.chat_template": "{{ messages }}"}) == ["completion"]


def test_go_template_overrides_jinja(tmp_path: Path) -> None:
    jinja = {"tokenizer.chat_template": "{{ tools }}"}
    assert _caps(tmp_path, jinja, go_template=QWEN_GO_TEMPLATE) == ["completion", "tools", "thinking"]
    assert _caps(tmp_path, jinja, go_template="{{ .Prompt }}") == ["completion"]
    fim = "{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ .Prompt }}{{ end }}"
    assert _caps(tmp_path, {}, go_template=fim) == ["completion", "insert"]


def test_go_template_thinking_needs_messages_loop_and_literal_tags(tmp_path: Path) -> None:
    outside = "{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
    assert _caps(tmp_path, {}, go_template=outside) == ["completion"]
    untagged = "{{ range .Messages }}{{ .Thinking }}{{ end }}"
    assert _caps(tmp_path, {}, go_template=untagged) == ["completion"]
    broken = "{{ range .Messages }}<think>{{ .Thinking }}</think>"
    assert _caps(tmp_path, {}, go_template=broken) == ["completion"]
    quoted = '{{ range .Messages }}<think>{{ .Thinking }}{{ "}} .Tools {{" }}</think>{{ end }}'
    assert _caps(tmp_path, {}, go_template=quoted) == ["completion", "thinking"]


def test_vision_audio_and_projectors(tmp_path: Path) -> None:
    assert _caps(tmp_path, {"gemma3n.vision.block_count": 4, "gemma3n.audio.block_count": 2}, arch="gemma3n") == [
        "completion",
        "vision",
        "audio",
    ]
    assert _caps(tmp_path, {}, has_projector=True) == ["completion", "vision"]
    audio_projector = read_gguf(
        write_gguf(
            tmp_path / "mmproj-audio.gguf",
            arch="clip",
            metadata={"clip.has_vision_encoder": False, "clip.has_audio_encoder": True},
        )
    )
    assert _caps(tmp_path, {}, projector=audio_projector) == ["completion", "audio"]
    omni = read_gguf(
        write_gguf(
            tmp_path / "mmproj-omni.gguf",
            arch="clip",
            metadata={"clip.has_vision_encoder": True, "clip.has_audio_encoder": True},
        )
    )
    assert _caps(tmp_path, {}, projector=omni) == ["completion", "vision", "audio"]
    assert _caps(tmp_path, {}, arch="nemotron_h_omni", projector=omni) == ["completion", "vision"]


def test_wrongly_typed_keys_are_ignored_without_reading_arrays(tmp_path: Path) -> None:
    data = build(
        [
            kv("general.architecture", VT.ARRAY, array_payload(VT.STRING, 100, gguf_string("x") * 100)),
            kv("tokenizer.chat_template", VT.ARRAY, array_payload(VT.UINT8, 100, b"t" * 100)),
            kv_str("general.file_type", "Q4_0"),
        ]
    )
    parsed = _read_bytes(tmp_path, data)
    parsed.path.unlink()
    assert parsed.architecture == ""
    details = model_details(parsed)
    assert (details.architecture, details.chat_template, details.quantization_level) == ("unknown", None, "unknown")
    assert derive_capabilities(parsed) == ["completion"]
    assert model_info(parsed, verbose=False)["general.architecture"] == []


def test_configured_parser_and_family_capabilities(tmp_path: Path) -> None:
    assert _caps(tmp_path, {}, configured=["tools"], parser_capabilities=["tools", "thinking"]) == [
        "tools",
        "completion",
        "thinking",
    ]
    assert _caps(tmp_path, {}, arch="gptoss") == ["completion", "thinking"]
    assert derive_capabilities(None, configured=["completion", "vision"]) == ["completion", "vision"]


# --- hostile files ------------------------------------------------------------------------------

U64_MAX = 2**64 - 1


def _f32_tensor(name: str = "w", dims: tuple[int, ...] = (8,), offset: int = 0, ggml_type: int = 0) -> bytes:
    return tensor_info(name, dims, ggml_type, offset)


HOSTILE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "too short"),
    "bad magic": (build([arch_kv()], magic=b"GGML"), "bad magic"),
    "version 1": (build([arch_kv()], version=1), "unsupported version 1"),
    "version 4": (build([arch_kv()], version=4), "unsupported version 4"),
    "big endian": (build([arch_kv()], version=3 << 24), "big-endian"),
    "huge tensor count": (build([arch_kv()], n_tensors=U64_MAX), "tensor count"),
    "huge kv count": (build([arch_kv()], n_kv=2**40), "metadata count"),
    "counts beyond file": (build([arch_kv()], n_kv=1000, n_tensors=1000), "cannot fit"),
    "key length 2^63": (build([struct.pack("<Q", 2**63) + b"x" * 32], n_kv=1), "metadata key of"),
    "empty key": (build([kv("", VT.UINT32, b"\0" * 4)]), "empty metadata key"),
    "key not utf-8": (build([kv(b"\xff\xfe", VT.UINT32, b"\0" * 4)]), "not valid UTF-8"),
    "string length 2^63": (build([kv("a", VT.STRING, struct.pack("<Q", 2**63) + b"x" * 16)]), "string of"),
    "string past end": (build([kv("a", VT.STRING, struct.pack("<Q", 1000) + b"x" * 16)]), "past end"),
    "unknown value type": (build([kv("a", 13, b"\0" * 8)]), "unknown value type 13"),
    "unknown element type": (build([kv("a", VT.ARRAY, array_payload(99, 1, b"\0" * 8))]), "unknown value type 99"),
    "huge array count": (build([kv("a", VT.ARRAY, array_payload(VT.UINT8, U64_MAX, b"\0" * 8))]), "elements (limit"),
    "array count beyond file": (
        build([kv("a", VT.ARRAY, array_payload(VT.UINT64, 1_000_000, b"\0" * 64))]),
        "past end of file",
    ),
    "string array past end": (
        build([kv("a", VT.ARRAY, array_payload(VT.STRING, 3, gguf_string("x") + struct.pack("<Q", 999)))]),
        "past end of file",
    ),
    "deeply nested arrays": (
        build([kv("a", VT.ARRAY, array_payload(VT.ARRAY, 1, array_payload(VT.ARRAY, 1, array_payload(
            VT.ARRAY, 1, array_payload(VT.ARRAY, 1, array_payload(VT.UINT8, 1, b"\1"))))))]),
        "nested deeper",
    ),
    "duplicate key": (build([kv_u32("a", 1), kv_u32("a", 2)]), "duplicate metadata key"),
    "alignment not power of two": (build([kv_u32("general.alignment", 48)]), "not a power of two"),
    "alignment zero": (build([kv_u32("general.alignment", 0)]), "not a power of two"),
    "alignment wrong type": (build([kv_str("general.alignment", "32")]), "must be a uint32"),
    "n_dims 100": (build([arch_kv()], [_f32_tensor(dims=(1,) * 100)], b"\0" * 64), "100 dimensions"),
    "dims product overflows": (
        build([arch_kv()], [_f32_tensor(dims=(2**32, 2**32))], b"\0" * 64),
        "too many elements",
    ),
    "dim above int64": (build([arch_kv()], [_f32_tensor(dims=(2**63, 0))], b"\0" * 64), "too many elements"),
    "unknown tensor type": (build([arch_kv()], [_f32_tensor(ggml_type=99)], b"\0" * 64), "unknown type 99"),
    "retired tensor type": (build([arch_kv()], [_f32_tensor(ggml_type=4)], b"\0" * 64), "unknown type 4"),
    "row not a block multiple": (
        build([arch_kv()], [_f32_tensor(dims=(33, 2), ggml_type=int(QT.Q4_0))], b"\0" * 64),
        "not a multiple of the Q4_0 block size",
    ),
    "misaligned offset": (build([arch_kv()], [_f32_tensor(offset=4)], b"\0" * 64), "not a multiple of the alignment"),
    "tensor past end": (build([arch_kv()], [_f32_tensor(dims=(64,))], b"\0" * 64), "extends past end of file"),
    "offset past end": (build([arch_kv()], [_f32_tensor(offset=2**60)], b"\0" * 64), "extends past end of file"),
    "overlapping tensors": (
        build([arch_kv()], [_f32_tensor("a", (16,), 0), _f32_tensor("b", (16,), 32)], b"\0" * 128),
        "overlap",
    ),
    "duplicate tensor": (
        build([arch_kv()], [_f32_tensor("a", (8,), 0), _f32_tensor("a", (8,), 32)], b"\0" * 64),
        "duplicate tensor name",
    ),
    "empty tensor name": (build([arch_kv()], [_f32_tensor("")], b"\0" * 64), "empty tensor name"),
    "tensor infos past end": (build([arch_kv()], [_f32_tensor()[:-4]]), "past end of file"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_is_rejected(tmp_path: Path, case: str) -> None:
    data, message = HOSTILE[case]
    with pytest.raises(GGUFError, match="invalid GGUF: .*" + re.escape(message)):
        _read_bytes(tmp_path, data)


def test_small_valid_raw_file_and_nested_arrays(tmp_path: Path) -> None:
    nested = array_payload(VT.ARRAY, 2, array_payload(VT.STRING, 1, gguf_string("x")) + array_payload(VT.UINT8, 0, b""))
    empty = array_payload(VT.ARRAY, 0, b"")
    data = build(
        [arch_kv("test"), kv("n", VT.ARRAY, nested), kv("e", VT.ARRAY, empty), kv_u32("general.alignment", 64)],
        [_f32_tensor("a", (16,), 0), _f32_tensor("b", (0, 4), 64), _f32_tensor("c", (4,), 64)],
        b"\1" * 96,
        alignment=64,
    )
    parsed = _read_bytes(tmp_path, data)
    assert parsed.metadata["n"] == [["x"], []]
    assert parsed.metadata["e"] == []
    assert parsed.alignment == 64 and parsed.data_offset % 64 == 0
    assert [t.nbytes for t in parsed.tensors] == [64, 0, 16]
    assert parsed.architecture == "test"


def test_truncation_at_every_offset(tmp_path: Path) -> None:
    full = _rich_file(tmp_path / "full.gguf").read_bytes()
    parsed = read_gguf(tmp_path / "full.gguf")
    data_end = max(parsed.data_offset + t.offset + t.nbytes for t in parsed.tensors)
    for cut in range(len(full)):
        path = tmp_path / "cut.gguf"
        path.write_bytes(full[:cut])
        if cut < data_end:
            with pytest.raises(GGUFError):
                read_gguf(path)
        else:
            assert len(read_gguf(path).tensors) == len(DEFAULT_TENSORS)


def test_scan_budget_stops_walking_long_string_arrays(tmp_path: Path) -> None:
    count = 200_000
    data = build([kv("a", VT.ARRAY, array_payload(VT.STRING, count, struct.pack("<Q", 0) * count))])
    limits = GGUFLimits(max_scanned_elements=100_000)
    with pytest.raises(GGUFError, match="array elements to scan"):
        _read_bytes(tmp_path, data, limits=limits)
    start = time.perf_counter()
    parsed = _read_bytes(tmp_path, data, name="ok.gguf")
    assert time.perf_counter() - start < 1.0
    assert parsed.metadata.array_info("a") is not None and len(parsed.metadata["a"]) == count


def test_metadata_byte_budget(tmp_path: Path) -> None:
    data = build([kv_str(f"k{i}", "x" * 1000) for i in range(10)])
    with pytest.raises(GGUFError, match="metadata exceeds"):
        _read_bytes(tmp_path, data, limits=GGUFLimits(max_metadata_bytes=5000))


def test_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="not a regular file"):
        read_gguf(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(GGUFError, match="not a regular file"):
        read_gguf(fifo)
    with pytest.raises(FileNotFoundError):
        read_gguf(tmp_path / "missing.gguf")


def test_lazy_array_of_a_changed_file(tmp_path: Path) -> None:
    path = _rich_file(tmp_path / "rich.gguf")
    parsed = read_gguf(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(GGUFError, match="changed"):
        parsed.metadata["tokenizer.ggml.tokens"]


# --- fuzzing ------------------------------------------------------------------------------------

_INTERESTING = [0, 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]

Mutation = Callable[[bytearray], None]


class FuzzSeed(msgspec.Struct, frozen=True):
    directory: Path
    data: bytes
    header_end: int


@pytest.fixture(scope="module")
def fuzz_seed(tmp_path_factory: pytest.TempPathFactory) -> FuzzSeed:
    directory = tmp_path_factory.mktemp("fuzz")
    path = _rich_file(directory / "seed.gguf")
    return FuzzSeed(directory, path.read_bytes(), read_gguf(path).data_offset)


def _flip(pos: int, mask: int) -> Mutation:
    def apply(data: bytearray) -> None:
        if pos < len(data):
            data[pos] ^= mask

    return apply


def _overwrite(pos: int, value: int, width: int) -> Mutation:
    def apply(data: bytearray) -> None:
        data[pos : pos + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")

    return apply


def _truncate(pos: int) -> Mutation:
    def apply(data: bytearray) -> None:
        del data[pos:]

    return apply


def _insert(pos: int, chunk: bytes) -> Mutation:
    def apply(data: bytearray) -> None:
        data[pos:pos] = chunk

    return apply


def _delete(pos: int, length: int) -> Mutation:
    def apply(data: bytearray) -> None:
        del data[pos : pos + length]

    return apply


def _mutations(seed: FuzzSeed) -> st.SearchStrategy[Mutation]:
    """Byte flips, overwrites with boundary values, truncations, insertions and deletions, mostly in the header."""
    position = st.one_of(st.integers(0, seed.header_end - 1), st.integers(0, len(seed.data) - 1))
    value = st.one_of(st.sampled_from(_INTERESTING), st.integers(0, 2**64 - 1))
    return st.one_of(
        st.builds(_flip, position, st.integers(1, 255)),
        st.builds(_overwrite, position, value, st.sampled_from([4, 8])),
        st.builds(_truncate, position),
        st.builds(_insert, position, st.binary(min_size=1, max_size=16)),
        st.builds(_delete, position, st.integers(1, 16)),
    )


def _exercise(parsed: GGUFFile) -> None:
    """Everything the server does with a parsed file must work on any file the reader accepts."""
    for key in parsed.metadata:
        parsed.metadata[key]
    model_details(parsed)
    msgspec.json.encode(model_info(parsed, verbose=True))
    model_info(parsed, verbose=False)
    tensor_list(parsed)
    derive_capabilities(parsed, projector=parsed)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(draw=st.data())
def test_mutated_files_parse_or_raise_gguf_error(fuzz_seed: FuzzSeed, draw: st.DataObject) -> None:
    data = bytearray(fuzz_seed.data)
    for mutate in draw.draw(st.lists(_mutations(fuzz_seed), min_size=1, max_size=4)):
        mutate(data)
    path = fuzz_seed.directory / "mutant.gguf"
    path.write_bytes(bytes(data))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        parsed = read_gguf(path)
        _exercise(parsed)
    except GGUFError:
        pass
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 4 << 20


def _elements(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
