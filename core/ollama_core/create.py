"""Building a model in the store from uploaded blobs and/or an existing model (``/api/create``)."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from ollama_core.digests import InvalidDigestError, parse_digest
from ollama_core.errors import RequestError
from ollama_core.gguf import GGUFError, model_details, read_gguf
from ollama_core.names import ModelName
from ollama_core.plugins import Registries
from ollama_core.progress import Progress, ProgressSink
from ollama_core.quantize import quantization_name, quantize
from ollama_core.store import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    Layer,
    Manifest,
    ModelConfig,
    ModelNotFoundError,
    RootFS,
    Store,
    load_model,
)
from ollama_core.verify import verify_conversion

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
PROJECTOR_ARCHITECTURES = frozenset({"clip", "mmproj"})
_REPLACED_BY = {
    "template": (MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PROMPT),
    "system": (MEDIA_TYPE_SYSTEM,),
    "parameters": (MEDIA_TYPE_PARAMS,),
    "messages": (MEDIA_TYPE_MESSAGES,),
    "license": (MEDIA_TYPE_LICENSE,),
}


class CreateError(RequestError):
    """A create request that cannot be carried out."""


@dataclass
class CreateSpec:
    """A validated create request."""

    name: ModelName
    from_model: str = ""
    files: Mapping[str, str] = field(default_factory=dict)
    adapters: Mapping[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    quantize: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    verify: bool = False


def check_file_map(files: Mapping[str, str]) -> dict[str, str]:
    """Validate a ``files``/``adapters`` map: clean relative paths to ``sha256:<hex>`` digests."""
    checked: dict[str, str] = {}
    for raw_path, raw_digest in files.items():
        path = PurePosixPath(raw_path.replace("\\", "/"))
        if not raw_path or path.is_absolute() or ".." in path.parts or raw_path.startswith("~") or ":" in path.parts[0]:
            raise CreateError(400, "file path must be relative")
        try:
            checked[str(path)] = parse_digest(raw_digest)
        except InvalidDigestError:
            raise CreateError(400, "invalid digest format") from None
    return checked


class _Builder:
    def __init__(self, store: Store, registries: Registries, progress: ProgressSink) -> None:
        self.store = store
        self.registries = registries
        self.progress = progress
        self.created: set[str] = set()

    def blob_path(self, digest: str) -> Path:
        if not self.store.has_blob(digest):
            raise CreateError(400, f"blob {digest} not found; upload it first with POST /api/blobs/{digest}")
        return self.store.blob_path(digest)

    def is_gguf(self, digest: str) -> bool:
        with open(self.blob_path(digest), "rb") as f:
            return f.read(4) == GGUF_MAGIC

    def gguf_layers(self, files: Mapping[str, str]) -> tuple[list[Layer], ModelConfig]:
        parsed = []
        for _, digest in sorted(files.items()):
            path = self.blob_path(digest)
            try:
                parsed.append((digest, path, read_gguf(path)))
            except GGUFError as exc:
                raise CreateError(400, str(exc)) from None
        self.progress(Progress("parsing GGUF"))
        model_layers: list[Layer] = []
        projector_layers: list[Layer] = []
        config = ModelConfig(model_format="gguf")
        for digest, path, gguf in parsed:
            layer_size = path.stat().st_size
            if gguf.architecture in PROJECTOR_ARCHITECTURES:
                projector_layers.append(Layer(mediaType=MEDIA_TYPE_PROJECTOR, digest=digest, size=layer_size))
                continue
            if model_layers:
                raise CreateError(400, "more than one model GGUF given; split GGUF files are not supported")
            details = model_details(gguf)
            config = ModelConfig(
                model_format="gguf",
                model_family=details.family,
                model_families=[details.family] if details.family else None,
                model_type=details.parameter_size,
                file_type=details.quantization_level,
            )
            model_layers.append(Layer(mediaType=MEDIA_TYPE_MODEL, digest=digest, size=layer_size))
        if not model_layers:
            raise CreateError(400, "no model GGUF among the files")
        return model_layers + projector_layers, config

    def converted_layers(
        self, files: Mapping[str, str], file_type: str, *, verify: bool = False
    ) -> tuple[list[Layer], ModelConfig]:
        """Materialise a safetensors checkpoint from blobs and convert it with a converter plugin."""
        with tempfile.TemporaryDirectory(prefix="ollama-convert-") as tmp:
            source = Path(tmp) / "checkpoint"
            for rel, digest in files.items():
                target = source / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(self.blob_path(digest))
            config_path = source / "config.json"
            if not config_path.is_file():
                raise CreateError(400, "unsupported model format: no GGUF file and no config.json")
            try:
                hf_config = json.loads(config_path.read_bytes()[: 4 << 20])
                architectures = list(hf_config.get("architectures") or [])
            except (ValueError, AttributeError):
                raise CreateError(400, "invalid config.json") from None
            spec = next((s for a in architectures if (s := self.registries.converter_for(a)) is not None), None)
            if spec is None:
                names = ", ".join(architectures) or "unknown"
                raise CreateError(400, f"unsupported architecture {names!r}: no installed plugin converts it")
            self.progress(Progress("converting model"))
            out_dir = Path(tmp) / "out"
            out_dir.mkdir()
            try:
                result = spec.factory().convert(
                    source,
                    out_dir,
                    file_type=file_type,
                    progress=lambda status, completed=None, total=None: self.progress(
                        Progress(status, completed=completed or 0, total=total or 0)
                    ),
                )
            except CreateError:
                raise
            except (ValueError, KeyError, OSError) as exc:
                raise CreateError(400, f"conversion failed: {exc}") from None
            if verify:
                verify_conversion(self.registries, architectures, source, result.model_path, self.progress)
            produced = {"model.gguf": self.store.put_file(result.model_path).digest}
            if result.projector_path is not None:
                produced["projector.gguf"] = self.store.put_file(result.projector_path).digest
            return self.gguf_layers(produced)

    def quantized(self, layers: list[Layer], config: ModelConfig, target: str) -> tuple[list[Layer], ModelConfig]:
        """Replace the model layer by its quantization to ``target``."""
        index = next(i for i, layer in enumerate(layers) if layer.mediaType == MEDIA_TYPE_MODEL)
        source = self.blob_path(layers[index].digest)
        with tempfile.TemporaryDirectory(prefix="ollama-quantize-") as tmp:
            output = Path(tmp) / "model.gguf"
            quantize(source, output, config.file_type or "", target, self.progress)
            info = self.store.put_file(output)
        self.created.add(info.digest)
        layers = list(layers)
        layers[index] = Layer(mediaType=MEDIA_TYPE_MODEL, digest=info.digest, size=info.size)
        return layers, msgspec.structs.replace(config, file_type=target)

    def text_layer(self, media_type: str, text: str) -> Layer:
        info = self.store.put_bytes(text.encode("utf-8"))
        if info.created:
            self.created.add(info.digest)
        return Layer(mediaType=media_type, digest=info.digest, size=info.size)

    def json_layer(self, media_type: str, value: Any) -> Layer:
        return self.text_layer(media_type, msgspec.json.encode(value).decode("utf-8"))


def create_model(store: Store, registries: Registries, spec: CreateSpec, progress: ProgressSink) -> None:
    """Create (or replace) ``spec.name`` in ``store``, reporting each step to ``progress``.

    Raises :class:`CreateError` for anything the client got wrong; the store is left as it was
    (new blobs that no manifest references are removed by the next prune).
    """
    builder = _Builder(store, registries, progress)
    files = check_file_map(spec.files)
    adapters = check_file_map(spec.adapters)
    target_type = quantization_name(spec.quantize) if spec.quantize else ""
    if spec.template is not None:
        _check_template(spec.template)

    layers: list[Layer] = []
    config = ModelConfig(model_format="gguf")
    parameters: dict[str, Any] = {}
    if spec.from_model:
        try:
            base_name = ModelName.parse(spec.from_model)
            base = load_model(store, base_name)
        except (ValueError, ModelNotFoundError):
            raise CreateError(404, f"model '{spec.from_model}' not found") from None
        layers = [
            msgspec.structs.replace(layer, from_=layer.from_ or base.name.display())
            if layer.mediaType == MEDIA_TYPE_MODEL
            else layer
            for layer in base.layers
        ]
        config = base.config
        parameters = dict(base.parameters)
    if files:
        if all(builder.is_gguf(d) for d in files.values()):
            new_layers, config = builder.gguf_layers(files)
        else:
            convert_type = target_type if target_type in ("F16", "BF16") else "F16"
            new_layers, config = builder.converted_layers(files, convert_type, verify=spec.verify)
        replaced = {MEDIA_TYPE_MODEL, MEDIA_TYPE_PROJECTOR}
        layers = new_layers + [layer for layer in layers if layer.mediaType not in replaced]
    if not layers:
        raise CreateError(400, "neither 'from' or 'files' was specified")
    for _, digest in sorted(adapters.items()):
        layers.append(Layer(mediaType=MEDIA_TYPE_ADAPTER, digest=digest, size=builder.blob_path(digest).stat().st_size))

    if target_type and target_type != config.file_type:
        layers, config = builder.quantized(layers, config, target_type)

    def replace(kind: str, new: Sequence[Layer]) -> None:
        nonlocal layers
        layers = [layer for layer in layers if layer.mediaType not in _REPLACED_BY[kind]] + list(new)

    if spec.template is not None:
        replace("template", [builder.text_layer(MEDIA_TYPE_TEMPLATE, spec.template)] if spec.template else [])
    if spec.system is not None:
        replace("system", [builder.text_layer(MEDIA_TYPE_SYSTEM, spec.system)] if spec.system else [])
    if spec.parameters:
        parameters.update(spec.parameters)
        replace("parameters", [builder.json_layer(MEDIA_TYPE_PARAMS, parameters)])
    if spec.messages is not None:
        replace("messages", [builder.json_layer(MEDIA_TYPE_MESSAGES, spec.messages)] if spec.messages else [])
    if spec.license is not None:
        replace("license", [builder.text_layer(MEDIA_TYPE_LICENSE, text) for text in spec.license])

    config = msgspec.structs.replace(
        config,
        renderer=spec.renderer or config.renderer,
        parser=spec.parser or config.parser,
        requires=spec.requires or config.requires,
        architecture="amd64",
        os="linux",
        rootfs=RootFS(type="layers", diff_ids=[layer.digest for layer in layers]),
    )
    config_bytes = msgspec.json.encode(config)
    config_info = store.put_bytes(config_bytes)
    for layer in layers:
        verb = "creating new" if layer.digest in builder.created else "using existing"
        progress(Progress(f"{verb} layer {layer.digest}"))
    manifest = Manifest(
        config=Layer(mediaType=MEDIA_TYPE_CONFIG, digest=config_info.digest, size=config_info.size),
        layers=layers,
    )
    progress(Progress("writing manifest"))
    store.replace_manifest(spec.name, manifest)
    progress(Progress("success"))


def _check_template(template: str) -> None:
    from ollama_core.prompt.go_template import TemplateError, parse_template

    try:
        parse_template(template)
    except TemplateError as exc:
        raise CreateError(400, f"template error: {exc}") from None
