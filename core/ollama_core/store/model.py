"""A stored model assembled from its manifest, config and small layers (Ollama's ``GetModel``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollama_core.digests import parse_digest
from ollama_core.names import ModelName
from ollama_core.store.errors import InvalidLayerError
from ollama_core.store.schema import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_DRAFT,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    Layer,
    ModelConfig,
)

if TYPE_CHECKING:
    from ollama_core.store.store import Store


@dataclass(frozen=True)
class Model:
    """Everything a manifest says about a model.

    ``digest`` is the hex SHA-256 of the manifest file; ``model_*`` come from the first model
    layer (``parent_model`` is its ``from``); a legacy ``prompt`` layer counts as the template.
    """

    name: ModelName
    digest: str
    size: int
    modified_at: datetime
    config: ModelConfig
    layers: list[Layer]
    model_path: Path | None = None
    model_digest: str | None = None
    parent_model: str = ""
    projector_paths: list[Path] = field(default_factory=list)
    projector_digests: list[str] = field(default_factory=list)
    adapter_paths: list[Path] = field(default_factory=list)
    adapter_digests: list[str] = field(default_factory=list)
    draft_path: Path | None = None
    draft_digest: str | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)


def load_model(store: Store, name: ModelName) -> Model:
    """Read model ``name`` (any case) from ``store``; raises ``ModelNotFoundError``.

    A config or layer that cannot be decoded raises ``InvalidLayerError``; a missing small layer
    raises ``BlobNotFoundError``.
    """
    stored = store.read_manifest(name)
    model_digest: str | None = None
    parent_model = ""
    draft_digest: str | None = None
    projectors: list[str] = []
    adapters: list[str] = []
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    licenses: list[str] = []
    for layer in stored.manifest.layers:
        digest = parse_digest(layer.digest)
        media_type = layer.mediaType
        if media_type == MEDIA_TYPE_MODEL and model_digest is None:
            model_digest, parent_model = digest, layer.from_
        elif media_type == MEDIA_TYPE_DRAFT and draft_digest is None:
            draft_digest = digest
        elif media_type == MEDIA_TYPE_PROJECTOR:
            projectors.append(digest)
        elif media_type == MEDIA_TYPE_ADAPTER:
            adapters.append(digest)
        elif media_type in (MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PROMPT):
            template = store.read_text(digest)
        elif media_type == MEDIA_TYPE_SYSTEM:
            system = store.read_text(digest)
        elif media_type == MEDIA_TYPE_PARAMS:
            parameters = _expect(store.read_json(digest), dict, digest, "an object")
        elif media_type == MEDIA_TYPE_MESSAGES:
            items = _expect(store.read_json(digest), list, digest, "an array")
            messages = [_expect(item, dict, digest, "an array of objects") for item in items]
        elif media_type == MEDIA_TYPE_LICENSE:
            licenses.append(store.read_text(digest))
    return Model(
        name=stored.name,
        digest=stored.digest,
        size=stored.size,
        modified_at=stored.modified_at,
        config=store.read_config(stored),
        layers=list(stored.manifest.layers),
        model_path=store.blob_path(model_digest) if model_digest else None,
        model_digest=model_digest,
        parent_model=parent_model,
        projector_paths=[store.blob_path(d) for d in projectors],
        projector_digests=projectors,
        adapter_paths=[store.blob_path(d) for d in adapters],
        adapter_digests=adapters,
        draft_path=store.blob_path(draft_digest) if draft_digest else None,
        draft_digest=draft_digest,
        template=template,
        system=system,
        parameters=parameters,
        messages=messages,
        license=licenses,
    )


def _expect(value: Any, kind: type, digest: str, shape: str) -> Any:
    if not isinstance(value, kind):
        raise InvalidLayerError(f"layer {digest} is not {shape}")
    return value
