"""The services a running server shares between its API surfaces."""

from __future__ import annotations

from dataclasses import dataclass, field

from ollama_core.inference import Inference
from ollama_core.model_facts import ModelInspector
from ollama_core.plugins import PluginManager, Registries
from ollama_core.settings import Settings
from ollama_core.store import Store


@dataclass
class ServerContext:
    """Handed to every API-surface factory: settings, plugins, the store, model facts, inference."""

    settings: Settings
    plugin_manager: PluginManager
    registries: Registries
    store: Store
    inspector: ModelInspector
    inference: Inference
    extras: dict[str, object] = field(default_factory=dict)
