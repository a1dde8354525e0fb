"""HF tokenizer.json to GGUF tokenizer metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFValueType, TokenType

from ollama_arch_modernbert.tokenizer import ModernBertTokenizerConverter, tokenizer_metadata


def _values(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: value.value for key, value in metadata.items()}


def test_fixture_tokenizer_metadata(fixture_dir: Path) -> None:
    metadata = tokenizer_metadata(fixture_dir, 512)
    kv = _values(metadata)
    assert kv["tokenizer.ggml.model"] == "gpt2"
    assert kv["tokenizer.ggml.pre"] == "modern-bert"
    assert len(kv["tokenizer.ggml.tokens"]) == 512
    assert kv["tokenizer.ggml.tokens"][508] == "[CLS]"
    types = kv["tokenizer.ggml.token_type"]
    assert types[:507] == [TokenType.NORMAL] * 507
    assert types[507:] == [TokenType.CONTROL] * 5
    assert kv["tokenizer.ggml.merges"][0] == "Ġ a"
    ids = {key.split(".")[-1]: kv[key] for key in kv if key.endswith("_id")}
    assert ids == {
        "bos_token_id": 508,
        "eos_token_id": 509,
        "seperator_token_id": 509,
        "padding_token_id": 510,
        "mask_token_id": 511,
        "unknown_token_id": 507,
    }
    assert kv["tokenizer.ggml.add_bos_token"] is True
    assert kv["tokenizer.ggml.add_eos_token"] is True
    assert metadata["tokenizer.ggml.bos_token_id"].type == GGUFValueType.UINT32
    assert metadata["tokenizer.ggml.token_type"].sub_type == GGUFValueType.INT32


def test_token_list_is_padded_to_the_model_vocab(fixture_dir: Path) -> None:
    kv = _values(tokenizer_metadata(fixture_dir, 520))
    assert kv["tokenizer.ggml.tokens"][512:] == [f"[PAD{i}]" for i in range(512, 520)]
    assert kv["tokenizer.ggml.token_type"][512:] == [TokenType.UNUSED] * 8
    with pytest.raises(ValueError, match="vocab_size"):
        tokenizer_metadata(fixture_dir, 500)


def test_converter_reads_vocab_size_from_config(fixture_dir: Path) -> None:
    kv = _values(ModernBertTokenizerConverter().gguf_metadata(fixture_dir))
    assert len(kv["tokenizer.ggml.tokens"]) == 512


def _edited(fixture_dir: Path, tmp_path: Path, edit: Any) -> Path:
    target = tmp_path / "tok"
    target.mkdir()
    shutil.copy(fixture_dir / "tokenizer_config.json", target)
    raw = json.loads((fixture_dir / "tokenizer.json").read_text(encoding="utf-8"))
    edit(raw)
    (target / "tokenizer.json").write_text(json.dumps(raw), encoding="utf-8")
    return target


def test_no_post_processor_means_no_special_tokens_added(fixture_dir: Path, tmp_path: Path) -> None:
    source = _edited(fixture_dir, tmp_path, lambda raw: raw.update(post_processor=None))
    kv = _values(tokenizer_metadata(source))
    assert kv["tokenizer.ggml.add_bos_token"] is False
    assert kv["tokenizer.ggml.add_eos_token"] is False
    assert kv["tokenizer.ggml.bos_token_id"] == 508


def test_string_merges_and_non_special_added_tokens(fixture_dir: Path, tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["model"]["merges"] = [" ".join(pair) for pair in raw["model"]["merges"]]
        raw["added_tokens"].append({"id": 512, "content": "<extra>", "special": False})

    kv = _values(tokenizer_metadata(_edited(fixture_dir, tmp_path, edit)))
    assert kv["tokenizer.ggml.merges"][0] == "Ġ a"
    assert kv["tokenizer.ggml.token_type"][512] == TokenType.USER_DEFINED


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.update(normalizer={"type": "NFC"}), "normalizer"),
        (lambda raw: raw.update(pre_tokenizer={"type": "Whitespace"}), "pre-tokenizer"),
        (lambda raw: raw["pre_tokenizer"].update(add_prefix_space=True), "pre-tokenizer"),
        (lambda raw: raw["model"].update(type="WordPiece"), "byte-level BPE"),
        (lambda raw: raw["post_processor"]["single"].insert(0, {"SpecialToken": {"id": "[MASK]"}}), "special tokens"),
    ],
)
def test_unsupported_tokenizers_are_refused(fixture_dir: Path, tmp_path: Path, edit: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tokenizer_metadata(_edited(fixture_dir, tmp_path, edit))
