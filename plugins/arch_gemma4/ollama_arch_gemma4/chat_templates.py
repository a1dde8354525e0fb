"""The Gemma 4 chat templates: the one a checkpoint ships, and the two bundled variants.

The small-model variant (E2B/E4B) and the large-model variant (26B/31B) differ in one place: the
large one appends an empty thought block to the generation prompt when thinking is off. Small
models are the ones with per-layer embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

SMALL = "small"
LARGE = "large"

_FILES = {SMALL: "gemma4_small.jinja", LARGE: "gemma4_large.jinja"}
_SMALL_BLOCK_COUNTS = (35, 42)


@cache
def bundled_template(variant: str) -> str:
    """The bundled canonical template for ``variant`` (:data:`SMALL` or :data:`LARGE`)."""
    return resources.files(__package__).joinpath("templates", _FILES[variant]).read_text(encoding="utf-8")


def variant_for(per_layer_input_width: int | None = None, block_count: int | None = None) -> str:
    """Which template variant a model uses: small when it has per-layer embeddings (E2B/E4B)."""
    if per_layer_input_width:
        return SMALL
    if per_layer_input_width is None and block_count in _SMALL_BLOCK_COUNTS:
        return SMALL
    return LARGE


def variant_from_metadata(metadata: Mapping[str, Any]) -> str:
    """The variant from GGUF metadata (``gemma4.embedding_length_per_layer_input``, ``gemma4.block_count``)."""
    width = metadata.get("gemma4.embedding_length_per_layer_input")
    blocks = metadata.get("gemma4.block_count")
    return variant_for(
        int(width) if isinstance(width, int) else None,
        int(blocks) if isinstance(blocks, int) else None,
    )


def checkpoint_template(source: Path) -> str | None:
    """The chat template a HF checkpoint ships: ``chat_template.jinja`` (transformers 5), else the
    ``chat_template`` entry of ``tokenizer_config.json`` (a string, or a list of named templates)."""
    jinja_file = source / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    config_file = source / "tokenizer_config.json"
    if not config_file.is_file():
        return None
    entry = json.loads(config_file.read_text(encoding="utf-8")).get("chat_template")
    if isinstance(entry, str):
        return entry
    if isinstance(entry, list):
        named = {item.get("name"): item.get("template") for item in entry if isinstance(item, Mapping)}
        chosen = named.get("default") or next(iter(named.values()), None)
        return chosen if isinstance(chosen, str) else None
    return None
