"""On-disk formats: the Docker v2 schema 2 manifest, its layers, media types and the config blob."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ollama_core.digests import InvalidDigestError, parse_digest
from ollama_core.store.errors import InvalidManifestError

MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_MODEL = "application/vnd.ollama.image.model"
MEDIA_TYPE_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_TYPE_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_TYPE_DRAFT = "application/vnd.ollama.image.draft"
MEDIA_TYPE_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_TYPE_PROMPT = "application/vnd.ollama.image.prompt"
MEDIA_TYPE_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_TYPE_PARAMS = "application/vnd.ollama.image.params"
MEDIA_TYPE_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_TYPE_LICENSE = "application/vnd.ollama.image.license"
MEDIA_TYPE_TENSOR = "application/vnd.ollama.image.tensor"
MEDIA_TYPE_JSON = "application/vnd.ollama.image.json"

MAX_MANIFEST_SIZE = 4 << 20
"""Largest manifest file accepted, in bytes."""

Size = Annotated[int, msgspec.Meta(ge=0)]


class Layer(msgspec.Struct, frozen=True, omit_defaults=True):
    """One manifest entry: a blob by digest, with its media type and size."""

    mediaType: str
    digest: str
    size: Size
    from_: str = msgspec.field(default="", name="from")
    name: str = ""


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """A Docker v2 schema 2 manifest as Ollama writes it."""

    schemaVersion: int = 2
    mediaType: str = MEDIA_TYPE_MANIFEST
    config: Layer
    layers: list[Layer]

    def total_size(self) -> int:
        """Sum of the config and layer sizes (the model ``size`` of ``/api/tags``)."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def digests(self) -> list[str]:
        """The canonical ``sha256:<hex>`` digest of the config and of every layer."""
        return [parse_digest(layer.digest) for layer in (self.config, *self.layers)]


class _ManifestFile(msgspec.Struct):
    schemaVersion: int = 2
    mediaType: str = MEDIA_TYPE_MANIFEST
    config: Layer | None = None
    layers: list[Layer] | None = None


class RootFS(msgspec.Struct, omit_defaults=True):
    """The ``rootfs`` object of the config blob: the layer digests in order."""

    type: str = ""
    diff_ids: list[str] | None = None


class Draft(msgspec.Struct, omit_defaults=True):
    """The ``draft`` object of the config blob: a speculative-decoding draft model in the same manifest."""

    model_format: str = ""
    architecture: str = ""
    tensor_prefix: str = ""
    config: str = ""


class ModelConfig(msgspec.Struct, omit_defaults=True):
    """The config blob Ollama writes for a model (``model.ConfigV2`` plus the image-spec fields).

    Empty values are omitted; Ollama writes empty strings for a few of them, which reads the same.
    """

    model_format: str = ""
    model_family: str = ""
    model_families: list[str] | None = None
    model_type: str = ""
    file_type: str = ""
    generation_defaults: dict[str, Any] | None = None
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: list[str] | None = None
    capabilities_explicit: bool = False
    context_length: int = 0
    embedding_length: int = 0
    base_name: str = ""
    draft: Draft | None = None
    architecture: str = ""
    os: str = ""
    rootfs: RootFS | None = None


def decode_manifest(raw: bytes) -> Manifest:
    """Parse and check manifest bytes; raises :class:`InvalidManifestError`.

    Every digest must be ``sha256:<64 hex>`` (or ``sha256-<64 hex>``), so no digest read from a
    manifest can ever name a path outside the blob directory.
    """
    if len(raw) > MAX_MANIFEST_SIZE:
        raise InvalidManifestError(f"manifest too large: limit is {MAX_MANIFEST_SIZE} bytes")
    try:
        parsed = msgspec.json.decode(raw, type=_ManifestFile)
    except msgspec.DecodeError as exc:
        raise InvalidManifestError(f"invalid manifest: {exc}") from None
    if parsed.config is None:
        raise InvalidManifestError("invalid manifest: missing config")
    manifest = Manifest(
        schemaVersion=parsed.schemaVersion,
        mediaType=parsed.mediaType,
        config=parsed.config,
        layers=parsed.layers or [],
    )
    try:
        manifest.digests()
    except InvalidDigestError:
        raise InvalidManifestError("invalid manifest: invalid digest format") from None
    return manifest


def encode_manifest(manifest: Manifest) -> bytes:
    """Manifest bytes as Ollama writes them (compact JSON and a trailing newline)."""
    return msgspec.json.encode(manifest) + b"\n"
