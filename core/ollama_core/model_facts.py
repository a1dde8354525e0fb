"""Facts about a stored model (details, capabilities, GGUF metadata), cached by blob digest."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ollama_core.gguf import GGUFError, GGUFFile, derive_capabilities, model_details, read_gguf
from ollama_core.store import ModelNotFoundError, load_model

if TYPE_CHECKING:
    from ollama_core.plugins import Registries
    from ollama_core.store import Model, ModelConfig, Store, StoredManifest


@dataclass(frozen=True)
class ModelDetails:
    """The ``details`` object of /api/tags, /api/show and /api/ps."""

    parent_model: str
    format: str
    family: str
    families: list[str] | None
    parameter_size: str
    quantization_level: str
    context_length: int | None = None
    embedding_length: int | None = None


@dataclass(frozen=True)
class ModelFacts:
    """What the server reports about a model, derived once per model digest."""

    details: ModelDetails
    capabilities: list[str]
    gguf: GGUFFile | None
    projector: GGUFFile | None
    architecture: str


class ModelInspector:
    """Reads GGUF headers of stored models through a small LRU cache keyed by blob digest."""

    def __init__(self, store: Store, registries: Registries, *, max_entries: int = 32) -> None:
        self.store = store
        self.registries = registries
        self._cache: OrderedDict[str, GGUFFile] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def gguf(self, digest: str) -> GGUFFile:
        """The parsed header of the GGUF blob ``digest`` (raises ``GGUFError`` if malformed)."""
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
                return cached
        parsed = read_gguf(self.store.blob_path(digest))
        with self._lock:
            self._cache[digest] = parsed
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return parsed

    def listing(self) -> list[tuple[StoredManifest, Model, ModelFacts]]:
        """Every readable stored model with its facts, newest first; unreadable ones are skipped."""
        entries = []
        for stored in self.store.list_models():
            try:
                model = load_model(self.store, stored.name)
                entries.append((stored, model, self.facts(model)))
            except (ModelNotFoundError, GGUFError, OSError, ValueError):
                continue
        entries.sort(key=lambda entry: entry[0].modified_at, reverse=True)
        return entries

    def facts(self, model: Model) -> ModelFacts:
        """Details and capabilities of ``model`` as Ollama reports them."""
        config = model.config
        gguf = self.gguf(model.model_digest) if model.model_digest else None
        projector = self.gguf(model.projector_digests[0]) if model.projector_digests else None
        arch = (gguf.architecture if gguf else "") or config.model_family or ""
        parser_caps: tuple[str, ...] = ()
        parser = self.registries.parser_for(config.parser or None, arch or None)
        if parser is not None and (config.parser or parser.name != "default"):
            parser_caps = parser.capabilities
        arch_desc = self.registries.architecture_for(arch) if arch else None
        configured = list(config.capabilities or [])
        if arch_desc is not None:
            configured += [c for c in arch_desc.capabilities if c not in configured]
        capabilities = derive_capabilities(
            gguf,
            go_template=model.template,
            has_projector=bool(model.projector_digests),
            projector=projector,
            parser_capabilities=parser_caps,
            configured=configured,
        )
        return ModelFacts(
            details=self._details(config, gguf, model.parent_model),
            capabilities=capabilities,
            gguf=gguf,
            projector=projector,
            architecture=arch,
        )

    @staticmethod
    def _details(config: ModelConfig, gguf: GGUFFile | None, parent_model: str) -> ModelDetails:
        found = model_details(gguf) if gguf is not None else None
        family = config.model_family or (found.family if found else "")
        families = list(config.model_families) if config.model_families else ([family] if family else None)
        return ModelDetails(
            parent_model=parent_model,
            format=config.model_format or "gguf",
            family=family,
            families=families,
            parameter_size=config.model_type or (found.parameter_size if found else ""),
            quantization_level=config.file_type or (found.quantization_level if found else ""),
            context_length=config.context_length or (found.context_length if found else None) or None,
            embedding_length=config.embedding_length or (found.embedding_length if found else None) or None,
        )
