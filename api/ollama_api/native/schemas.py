"""Wire types of the native model-management endpoints (``/api/tags``, ``show``, ``create``, ...)."""

from __future__ import annotations

from typing import Any

import msgspec


class VersionResponse(msgspec.Struct):
    version: str


class ModelDetails(msgspec.Struct, omit_defaults=True):
    parent_model: str = ""
    format: str = ""
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""
    context_length: int | None = None
    embedding_length: int | None = None



class ListModel(msgspec.Struct, omit_defaults=True):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails
    capabilities: list[str] | None = None


class ListResponse(msgspec.Struct):
    models: list[ListModel]


class ShowRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    name: str = ""
    verbose: bool = False
    system: str = ""
    template: str = ""
    options: dict[str, Any] | None = None


class Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str = ""


class TensorEntry(msgspec.Struct):
    name: str
    type: str
    shape: list[int]


class ShowResponse(msgspec.Struct, omit_defaults=True):
    modelfile: str
    details: ModelDetails
    model_info: dict[str, Any]
    modified_at: str
    license: str = ""
    parameters: str = ""
    template: str = ""
    system: str = ""
    renderer: str = ""
    parser: str = ""
    messages: list[Message] | None = None
    projector_info: dict[str, Any] | None = None
    tensors: list[TensorEntry] | None = None
    capabilities: list[str] | None = None
    requires: str = ""


class CreateRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    name: str = ""
    from_: str = msgspec.field(default="", name="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    quantize: str = ""
    quantization: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    verify: bool = False
    stream: bool = True


class CopyRequest(msgspec.Struct):
    source: str = ""
    destination: str = ""


class DeleteRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    name: str = ""
