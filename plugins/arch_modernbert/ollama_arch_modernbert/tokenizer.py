"""HF ``tokenizer.json`` (byte-level BPE, ``[CLS] $A [SEP]``) to GGUF ``tokenizer.*`` metadata.

The result maps GGUF keys to :class:`gguf.GGUFValue` so each value carries the exact GGUF type
llama.cpp checks when loading (ids are u32, token types i32, flags bool).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gguf import GGUFValue, GGUFValueType, Keys, TokenType

from ollama_arch_modernbert.config import read_json

logger = logging.getLogger(__name__)

TOKENIZER_MODEL = "gpt2"
PRE_TOKENIZER = "modern-bert"
"""The ``tokenizer.ggml.pre`` value llama.cpp maps to the GPT-2 byte-level regex for ModernBERT."""

_SPECIAL_ROLES = ("unk", "cls", "sep", "pad", "mask")


class ModernBertTokenizerConverter:
    """Builds GGUF tokenizer metadata from a checkpoint directory's ``tokenizer.json``."""

    def gguf_metadata(self, source: Path) -> Mapping[str, Any]:
        """GGUF ``tokenizer.*`` keys, padded to ``vocab_size`` from ``config.json`` when present."""
        config = source / "config.json"
        vocab_size = read_json(config).get("vocab_size") if config.is_file() else None
        return tokenizer_metadata(source, vocab_size)


def tokenizer_metadata(source: Path, vocab_size: int | None = None) -> dict[str, GGUFValue]:
    """GGUF tokenizer metadata for ``source/tokenizer.json``; the token list is padded to ``vocab_size``.

    Raises ``ValueError`` when the tokenizer is not a byte-level BPE that llama.cpp's
    ``gpt2``/``modern-bert`` tokenizer reproduces.
    """
    raw = read_json(source / "tokenizer.json")
    _check_supported(raw)
    tokens, types = _tokens(raw, vocab_size)
    ids = {token: i for i, token in enumerate(tokens)}
    names = _special_names(source, raw)
    special = {role: ids[name] for role, name in names.items() if name in ids}
    leading, trailing = _template_specials(raw.get("post_processor"))
    bos = ids[leading] if leading else special.get("cls")
    eos = ids[trailing] if trailing else special.get("sep")
    if bos is None or eos is None:
        raise ValueError("tokenizer has no [CLS]/[SEP] tokens: cannot set llama.cpp's BOS/EOS ids")

    kv: dict[str, GGUFValue] = {
        Keys.Tokenizer.MODEL: GGUFValue(TOKENIZER_MODEL, GGUFValueType.STRING),
        Keys.Tokenizer.PRE: GGUFValue(PRE_TOKENIZER, GGUFValueType.STRING),
        Keys.Tokenizer.LIST: GGUFValue(tokens, GGUFValueType.ARRAY, GGUFValueType.STRING),
        Keys.Tokenizer.TOKEN_TYPE: GGUFValue(types, GGUFValueType.ARRAY, GGUFValueType.INT32),
        Keys.Tokenizer.MERGES: GGUFValue(_merges(raw), GGUFValueType.ARRAY, GGUFValueType.STRING),
        Keys.Tokenizer.BOS_ID: GGUFValue(bos, GGUFValueType.UINT32),
        Keys.Tokenizer.EOS_ID: GGUFValue(eos, GGUFValueType.UINT32),
        Keys.Tokenizer.SEP_ID: GGUFValue(special.get("sep", eos), GGUFValueType.UINT32),
        Keys.Tokenizer.ADD_BOS: GGUFValue(leading is not None, GGUFValueType.BOOL),
        Keys.Tokenizer.ADD_EOS: GGUFValue(trailing is not None, GGUFValueType.BOOL),
        Keys.Tokenizer.ADD_SEP: GGUFValue(trailing is not None, GGUFValueType.BOOL),
    }
    for role, key in (("pad", Keys.Tokenizer.PAD_ID), ("mask", Keys.Tokenizer.MASK_ID), ("unk", Keys.Tokenizer.UNK_ID)):
        if role in special:
            kv[key] = GGUFValue(special[role], GGUFValueType.UINT32)
    return kv


def _check_supported(raw: dict[str, Any]) -> None:
    """Refuse tokenizers whose behaviour llama.cpp's byte-level BPE would not reproduce."""
    model = raw.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "merges" not in model:
        raise ValueError(f"tokenizer model {model.get('type')!r} is not supported: expected byte-level BPE")
    if raw.get("normalizer") is not None:
        raise ValueError(f"tokenizer normalizer {raw['normalizer'].get('type')!r} is not supported by llama.cpp's BPE")
    pre = raw.get("pre_tokenizer") or {}
    byte_level = pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space")
    if not byte_level:
        raise ValueError(
            f"pre-tokenizer {pre!r} is not supported: expected ByteLevel with the GPT-2 regex and no prefix space"
        )
    if model.get("ignore_merges"):
        logger.warning("tokenizer sets ignore_merges; llama.cpp always applies merges, rare words may split differently")


def _tokens(raw: dict[str, Any], vocab_size: int | None) -> tuple[list[str], list[int]]:
    """Id-ordered token strings and GGUF token types, padded with unused ``[PAD<i>]`` entries."""
    by_id: dict[int, tuple[str, int]] = {int(i): (t, TokenType.NORMAL) for t, i in raw["model"]["vocab"].items()}
    for added in raw.get("added_tokens") or ():
        kind = TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED
        by_id[int(added["id"])] = (added["content"], kind)
    size = max(by_id) + 1
    if vocab_size is not None:
        if vocab_size < size:
            raise ValueError(f"tokenizer has ids up to {size - 1} but the model's vocab_size is {vocab_size}")
        size = vocab_size
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):
        token, kind = by_id.get(i, (f"[PAD{i}]", TokenType.UNUSED))
        tokens.append(token)
        types.append(int(kind))
    return tokens, types


def _merges(raw: dict[str, Any]) -> list[str]:
    """BPE merges as ``"left right"``; pair-form merges are joined, literal spaces encoded as U+0120."""
    merges = raw["model"]["merges"]
    if not merges or isinstance(merges[0], str):
        return list(merges)
    return [" ".join(part.replace(" ", "\u0120") for part in pair) for pair in merges]


def _special_names(source: Path, raw: dict[str, Any]) -> dict[str, str]:
    """Token strings of the special roles: ``tokenizer_config.json`` first, then the BERT defaults."""
    config_path = source / "tokenizer_config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    added = {t["content"] for t in raw.get("added_tokens") or ()}
    names: dict[str, str] = {}
    for role in _SPECIAL_ROLES:
        value = config.get(f"{role}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if not value and f"[{role.upper()}]" in added:
            value = f"[{role.upper()}]"
        if value:
            names[role] = str(value)
    return names


def _template_specials(post_processor: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The special tokens the post-processor puts before and after a single sequence.

    Only ``[X] $A [Y]`` shapes (either side optional) are representable as llama.cpp's
    add-BOS/add-EOS flags; anything else is refused.
    """
    if not post_processor:
        return None, None
    processors = post_processor.get("processors") if post_processor.get("type") == "Sequence" else [post_processor]
    leading = trailing = None
    for processor in processors or ():
        kind = processor.get("type")
        if kind in ("BertProcessing", "RobertaProcessing"):
            leading, trailing = processor["cls"][0], processor["sep"][0]
        elif kind == "TemplateProcessing":
            leading, trailing = _single_template(processor.get("single") or [])
        elif kind != "ByteLevel":
            raise ValueError(f"tokenizer post-processor {kind!r} is not supported")
    return leading, trailing


def _single_template(single: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """``(leading, trailing)`` special tokens of a TemplateProcessing ``single`` template."""
    kinds = ["A" if "Sequence" in item else item.get("SpecialToken", {}).get("id") for item in single]
    if kinds.count("A") != 1:
        raise ValueError(f"tokenizer template {kinds} is not supported: expected one sequence")
    at = kinds.index("A")
    before, after = kinds[:at], kinds[at + 1:]
    if len(before) > 1 or len(after) > 1:
        raise ValueError(f"tokenizer template {kinds} adds more special tokens than llama.cpp's BOS/EOS can express")
    return (before[0] if before else None), (after[0] if after else None)
