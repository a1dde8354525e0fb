"""Every hook a plugin can implement.

Plugins are found through the entry-point group ``ollama.plugins``; each entry point names a
module (or object) holding functions decorated with :data:`hookimpl`. All hooks are
*registration* hooks: they run once, when the server (or a CLI command) builds its registries,
and return cheap descriptors from :mod:`ollama_core.descriptors`. Nothing here runs per request
or per token; the objects the descriptors' factories build are called directly on the hot path.

Every hook returns a sequence (possibly empty) and every plugin's answer is collected; a plugin
whose hook raises is reported (``ollama plugins`` lists the error) and its answer is skipped.
Two plugins registering the same name in one family is reported as an error naming both; the
first one registered (built-ins come first) keeps the name.

Compatibility: hooks only ever gain arguments. A plugin may set ``OLLAMA_PLUGIN_API = N`` at
module level to declare the spec version it was written against (:data:`SPEC_VERSION`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from ollama_core.descriptors import (
    ApiSurface,
    Architecture,
    BackendSpec,
    ConverterSpec,
    ParserSpec,
    ReferenceSpec,
    RendererSpec,
    TokenizerSpec,
)

PROJECT_NAME = "ollama"
SPEC_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ollama_architectures() -> Sequence[Architecture]:
    """Declare the model architectures this plugin understands.

    Called once when registries are built. Return :class:`Architecture` descriptors naming the
    GGUF ``general.architecture`` values and HF ``architectures`` entries handled, extra
    capabilities every such model has, capabilities a model gains from its projector
    (``projector_capabilities``: ``vision``, ``audio``) and the default renderer/parser names
    for such models. Return an empty sequence to declare none.

    Declaring ``audio`` in either is what makes the server mount ``POST /v1/audio/transcriptions``:
    without an architecture that offers audio input the route does not exist.
    """


@hookspec
def ollama_converters() -> Sequence[ConverterSpec]:
    """Offer converters from HF safetensors checkpoints to GGUF.

    Called once when registries are built. Each :class:`ConverterSpec` lists the HF
    ``architectures`` it converts and a factory that builds the converter (import heavy modules
    inside the factory). ``ollama create`` from a checkpoint directory picks the converter whose
    ``hf_architectures`` contains the checkpoint's architecture.
    """


@hookspec
def ollama_tokenizers() -> Sequence[TokenizerSpec]:
    """Offer tokenizer converters: HF tokenizer files to GGUF ``tokenizer.*`` metadata.

    Called once when registries are built. Converters use them by architecture name.
    """


@hookspec
def ollama_reference_models() -> Sequence[ReferenceSpec]:
    """Offer reference forward passes used to verify conversions (``ollama create --verify``).

    Called once when registries are built. After a checkpoint is converted, the verifier runs
    probe inputs through llama.cpp and through the :class:`ReferenceSpec` whose
    ``hf_architectures`` matches the checkpoint, and reports cosine similarity per probe.
    """


@hookspec
def ollama_renderers() -> Sequence[RendererSpec]:
    """Offer chat prompt renderers.

    Called once when registries are built. A renderer is chosen for a model by the ``renderer``
    name in its config, else by its GGUF architecture, else the built-in ``default`` renderer
    (the GGUF's own Jinja chat template, or the Modelfile TEMPLATE) is used.

    Images and audio: every entry of a message's ``images`` (audio included; tell them apart
    with :func:`ollama_core.media.media_kind`) must appear in the rendered text, in message
    order, as the text the renderer lists for it in :attr:`RenderedPrompt.media` (the model's
    media token, e.g. ``<|image|>``, or ``[img-N]``). The core swaps each for llama.cpp's media
    marker, where the runner puts the item's embeddings.
    """


@hookspec
def ollama_parsers() -> Sequence[ParserSpec]:
    """Offer streaming output parsers that split generated text into content, thinking and tool calls.

    Called once when registries are built. Chosen like renderers: by the model's ``parser``
    name, else by architecture, else the built-in ``default`` parser. A :class:`ParserSpec`'s
    ``capabilities`` (``tools``, ``thinking``) are added to the capabilities of models using it.
    """


@hookspec
def ollama_backends() -> Sequence[BackendSpec]:
    """Offer compute backends (CPU, CUDA, Metal, ...).

    Called once when registries are built. Before every model load the core asks each
    backend, highest ``priority`` first, for its :class:`BackendStatus` (devices with their
    current free memory) and plans how many layers go to which device of the first available
    backend with devices; the built-in CPU backend is the fallback. Backends only describe
    devices: they never choose layer counts themselves.
    """


@hookspec
def ollama_api_surfaces() -> Sequence[ApiSurface]:
    """Offer HTTP API surfaces to mount on the server.

    Called once when the app is built. Each :class:`ApiSurface` factory receives the
    :class:`~ollama_core.context.ServerContext` and returns Litestar route handlers,
    controllers or routers (an empty list mounts nothing). The native ``/api/*``, OpenAI
    ``/v1/*`` and audio ``/v1/audio/*`` surfaces are built-in plugins of this hook; the audio
    surface mounts its routes only when the registries offer ``audio``
    (:meth:`~ollama_core.plugins.Registries.offers`).
    """
