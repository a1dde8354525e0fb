"""Gemma 4 tokenizer files (``tokenizer.json`` + ``tokenizer_config.json``) -> GGUF ``tokenizer.*`` metadata.

llama.cpp's ``gemma4`` tokenizer model is BPE over raw UTF-8 with ``▁`` for spaces and
``<0xNN>`` byte fallback. Token types decide how llama.cpp treats each token: special tokens are
CONTROL (parsed from text only when asked, never detokenized), non-special added tokens and the
seven chat markers a parser must see are USER_DEFINED (always parsed, always detokenized). A
marker typed NORMAL would be split into characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ollama_arch_gemma4.chat_templates import checkpoint_template

NORMAL = 1
CONTROL = 3
USER_DEFINED = 4
BYTE = 6

VISIBLE_MARKERS = frozenset(
    {"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", '<|"|>'}
)
"""Markers forced to USER_DEFINED so that they appear in detokenized text for the output parser."""

_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "cls_token", "sep_token")
_SCORE = -1000.0


class Gemma4TokenizerConverter:
    """Reads a Gemma 4 checkpoint's tokenizer files into GGUF tokenizer metadata."""

    def gguf_metadata(self, source: Path) -> dict[str, Any]:
        """GGUF ``tokenizer.*`` keys and values (ids as ints, arrays as lists) for ``source``."""
        return tokenizer_metadata(source)


def tokenizer_metadata(source: Path) -> dict[str, Any]:
    """The GGUF tokenizer metadata of the checkpoint directory ``source``.

    Includes ``tokenizer.chat_template`` when the checkpoint ships one.
    """
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    config_file = source / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    model_config_file = source / "config.json"
    model_config = json.loads(model_config_file.read_text(encoding="utf-8")) if model_config_file.is_file() else {}
    _check_model(tokenizer)

    model = tokenizer["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    added = sorted(tokenizer.get("added_tokens") or [], key=lambda t: int(t["id"]))
    by_id: dict[int, str] = {int(i): text for text, i in vocab.items()}
    added_by_id: dict[int, Mapping[str, Any]] = {}
    for token in added:
        token_id = int(token["id"])
        added_by_id[token_id] = token
        existing = by_id.get(token_id)
        if existing is not None and existing != token["content"]:
            raise ValueError(
                f"tokenizer.json: id {token_id} is {existing!r} in the vocab but {token['content']!r} as an added token"
            )
        by_id[token_id] = token["content"]
    count = len(by_id)
    missing = [i for i in range(count) if i not in by_id]
    if missing:
        raise ValueError(f"tokenizer.json: token ids are not contiguous (first missing id {missing[0]})")
    tokens = [by_id[i] for i in range(count)]
    ids = {text: i for i, text in enumerate(tokens)}

    special_ids = {i for i, token in added_by_id.items() if token.get("special")}
    for name in _NAMED_SPECIALS:
        text = _token_text(tok_config.get(name))
        if text is not None and text in ids:
            special_ids.add(ids[text])
    for key in ("additional_special_tokens", "extra_special_tokens"):
        extra = tok_config.get(key)
        values = extra.values() if isinstance(extra, Mapping) else extra or []
        special_ids.update(ids[t] for t in (_token_text(v) for v in values) if t is not None and t in ids)

    types = [_token_type(i, text, special_ids, added_by_id) for i, text in enumerate(tokens)]

    metadata: dict[str, Any] = {
        "tokenizer.ggml.model": "gemma4",
        "tokenizer.ggml.pre": "gemma4",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [_SCORE] * count,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": [_merge_text(m) for m in model.get("merges") or []],
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.ggml.add_space_prefix": False,
    }
    nested = model_config.get("text_config")
    text_config: Mapping[str, Any] = nested if isinstance(nested, Mapping) else model_config
    for key, name, fallback in (
        ("tokenizer.ggml.bos_token_id", "bos_token", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token", "pad_token_id"),
        ("tokenizer.ggml.unknown_token_id", "unk_token", None),
        ("tokenizer.ggml.mask_token_id", "mask_token", None),
        ("tokenizer.ggml.eot_token_id", "eot_token", None),
    ):
        special = _special_id(tok_config.get(name), ids, text_config.get(fallback) if fallback else None)
        if special is not None:
            metadata[key] = special
    template = checkpoint_template(source)
    if template:
        metadata["tokenizer.chat_template"] = template
    return metadata


def _check_model(tokenizer: Mapping[str, Any]) -> None:
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise ValueError("tokenizer.json: Gemma 4 needs a BPE model with byte_fallback")
    if "\\u2581" not in json.dumps(tokenizer.get("normalizer")):
        raise ValueError("tokenizer.json: expected a normalizer replacing spaces with '\u2581'")


def _token_type(token_id: int, text: str, special_ids: set[int], added: Mapping[int, Mapping[str, Any]]) -> int:
    if text in VISIBLE_MARKERS:
        return USER_DEFINED
    if _BYTE_TOKEN.fullmatch(text):
        return BYTE
    if token_id in special_ids:
        return CONTROL
    if token_id in added:
        return USER_DEFINED
    return NORMAL


def _merge_text(merge: str | list[str]) -> str:
    if isinstance(merge, str):
        return merge
    left, right = merge
    return f"{left} {right}"


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    content = value.get("content") if isinstance(value, Mapping) else None
    return content if isinstance(content, str) else None


def _special_id(value: Any, ids: Mapping[str, int], fallback: Any) -> int | None:
    text = _token_text(value)
    if text is not None and text in ids:
        return ids[text]
    if isinstance(fallback, list):
        fallback = fallback[0] if fallback else None
    return int(fallback) if isinstance(fallback, int) and fallback < len(ids) else None
