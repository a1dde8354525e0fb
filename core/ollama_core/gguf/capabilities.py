"""Model capabilities (completion, tools, insert, vision, embedding, thinking, audio) as Ollama derives them."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ollama_core.gguf.reader import GGUFFile
from ollama_core.gguf.template_features import (
    GoTemplateSyntaxError,
    go_template_identifiers,
    go_template_thinking_tags,
    jinja_template_has_thinking,
    jinja_template_has_tools,
)

logger = logging.getLogger(__name__)

COMPLETION = "completion"
TOOLS = "tools"
INSERT = "insert"
VISION = "vision"
EMBEDDING = "embedding"
THINKING = "thinking"
AUDIO = "audio"
IMAGE = "image"

THINKING_FAMILIES = frozenset({"gptoss", "gpt-oss"})
"""Architectures that always think."""
AUDIO_SUPPRESSED_ARCHITECTURES = frozenset({"nemotron_h_omni"})
"""Architectures whose audio input is not served even when the files carry an audio encoder."""
AUDIO_SUPPRESSED_PROJECTORS = frozenset({"gemma3nv"})
"""Projector types (``<arch>.vision.projector_type``) whose audio encoder is not served."""


def derive_capabilities(
    gguf: GGUFFile | None,
    *,
    go_template: str | None = None,
    has_projector: bool = False,
    projector: GGUFFile | None = None,
    parser_capabilities: Iterable[str] = (),
    configured: Iterable[str] = (),
) -> list[str]:
    """Capabilities of a model, in the order Ollama lists them.

    ``configured`` (from the model's config) come first; then, from the GGUF, the Jinja chat
    template's tools/thinking when no Go template is used, embedding (``<arch>.pooling_type``) or
    else completion, vision (``<arch>.vision.block_count``) and audio (``<arch>.audio.block_count``);
    then vision and audio from the projector; then tools/insert/thinking from the Go template,
    the parser's capabilities, and thinking for gpt-oss.
    """
    capabilities: list[str] = []

    def add(capability: str) -> None:
        if capability not in capabilities:
            capabilities.append(capability)

    for capability in configured:
        add(capability)

    architecture = ""
    if gguf is not None:
        architecture = gguf.architecture
        metadata = gguf.metadata
        chat_template = metadata.scalar("tokenizer.chat_template")
        if not go_template and isinstance(chat_template, str) and chat_template:
            if jinja_template_has_tools(chat_template):
                add(TOOLS)
            if jinja_template_has_thinking(chat_template):
                add(THINKING)
        add(EMBEDDING if f"{architecture}.pooling_type" in metadata else COMPLETION)
        if f"{architecture}.vision.block_count" in metadata:
            add(VISION)
        if f"{architecture}.audio.block_count" in metadata:
            add(AUDIO)

    if has_projector or projector is not None:
        if projector is None or _projector_has_vision(projector):
            add(VISION)
        if projector is not None and _projector_has_audio(projector):
            add(AUDIO)

    if go_template:
        for capability in _go_template_capabilities(go_template):
            add(capability)

    for capability in parser_capabilities:
        add(capability)

    if architecture in THINKING_FAMILIES:
        add(THINKING)
    if architecture in AUDIO_SUPPRESSED_ARCHITECTURES and AUDIO in capabilities:
        capabilities.remove(AUDIO)
    return capabilities


def _go_template_capabilities(template: str) -> list[str]:
    try:
        identifiers = go_template_identifiers(template)
        opening, closing = go_template_thinking_tags(template)
    except GoTemplateSyntaxError as exc:
        logger.warning("model template contains errors: %s", exc)
        return []
    capabilities = []
    if "tools" in identifiers:
        capabilities.append(TOOLS)
    if "suffix" in identifiers:
        capabilities.append(INSERT)
    if opening and closing:
        capabilities.append(THINKING)
    return capabilities


def _projector_has_vision(projector: GGUFFile) -> bool:
    """A projector serves images unless it declares ``<arch>.has_vision_encoder`` false."""
    return projector.metadata.scalar(f"{projector.architecture}.has_vision_encoder") is not False


def _projector_has_audio(projector: GGUFFile) -> bool:
    """Whether a projector declares an audio encoder (``*.has_audio_encoder``) that is served."""
    metadata = projector.metadata
    prefix = projector.architecture
    declared = metadata.scalar(f"{prefix}.has_audio_encoder") is True or any(
        key.endswith(".has_audio_encoder") and metadata.scalar(key) is True for key in metadata
    )
    projector_type = metadata.scalar(f"{prefix}.vision.projector_type")
    return declared and not (isinstance(projector_type, str) and projector_type in AUDIO_SUPPRESSED_PROJECTORS)
