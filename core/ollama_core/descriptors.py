"""What plugins hand to the core: cheap, immutable descriptors with lazy factories.

Registration hooks return these objects. Building one must not import anything heavy
(numpy, llama_cpp, litestar): the ``factory`` callables do that, and only when the core
needs the object, so ``ollama --help`` stays fast with every plugin installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ollama_core.context import ServerContext


@dataclass(frozen=True)
class Architecture:
    """A model architecture a plugin understands.

    ``gguf_architectures`` are values of the GGUF key ``general.architecture``;
    ``hf_architectures`` are entries of a HF ``config.json`` ``architectures`` list.
    ``renderer`` and ``parser`` name the prompt renderer and output parser used for
    models of this architecture when the model's config names none.

    ``capabilities`` are claimed by every model of the architecture. ``projector_capabilities``
    (``vision``, ``audio``) are only offered: a model has them when its own projector GGUF
    carries the matching encoder. Either kind counts for :meth:`Registries.offers
    <ollama_core.plugins.Registries.offers>`, which decides whether input-specific API surfaces
    (``/v1/audio/transcriptions`` for ``audio``) are mounted.
    """

    name: str
    gguf_architectures: tuple[str, ...] = ()
    hf_architectures: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    renderer: str | None = None
    parser: str | None = None
    projector_capabilities: tuple[str, ...] = ()


class ProgressCallback(Protocol):
    """Receives human-readable progress: a status line and optional byte counts."""

    def __call__(self, status: str, *, completed: int | None = None, total: int | None = None) -> None: ...


@dataclass(frozen=True)
class ConversionResult:
    """What a converter produced: the model GGUF and, for multimodal models, a projector GGUF."""

    model_path: Path
    projector_path: Path | None = None
    notes: tuple[str, ...] = ()


class Converter(Protocol):
    """Turns a HF safetensors checkpoint directory into GGUF files."""

    def convert(
        self, source: Path, output_dir: Path, *, file_type: str, progress: ProgressCallback
    ) -> ConversionResult:
        """Convert ``source`` into files under ``output_dir`` at ``file_type`` (``F32``, ``F16``, ``BF16``)."""
        ...


@dataclass(frozen=True)
class ConverterSpec:
    """Announces a converter for the HF ``architectures`` it handles."""

    name: str
    hf_architectures: tuple[str, ...]
    factory: Callable[[], Converter]


@dataclass(frozen=True)
class ReferenceOutput:
    """What a reference forward pass computed for one input.

    ``final`` is the model's output for the input (a pooled embedding, or the last position's
    logits); ``layers`` optionally holds each layer's hidden states (tokens x width).
    ``checkpoints`` holds intermediate states (tokens x width) keyed by the name llama.cpp
    gives the same tensor in its graph (``l_out-3`` for layer 3's output, ``ffn_inp-0``...), so
    ``ollama create --verify`` can tell in which layer a conversion goes wrong.
    """

    final: Any
    layers: tuple[Any, ...] = ()
    checkpoints: Mapping[str, Any] = field(default_factory=dict)


class ReferenceModel(Protocol):
    """A small, exact implementation of an architecture's forward pass (e.g. in numpy)."""

    def run(self, token_ids: Sequence[int]) -> ReferenceOutput: ...


@dataclass(frozen=True)
class ReferenceSpec:
    """Announces a reference forward pass for HF ``architectures``; ``factory(checkpoint_dir)`` loads it."""

    name: str
    hf_architectures: tuple[str, ...]
    factory: Callable[[Path], ReferenceModel]


class TokenizerConverter(Protocol):
    """Reads HF tokenizer files and returns GGUF ``tokenizer.*`` metadata."""

    def gguf_metadata(self, source: Path) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class TokenizerSpec:
    """Announces a tokenizer converter, chosen by architecture name."""

    name: str
    architectures: tuple[str, ...]
    factory: Callable[[], TokenizerConverter]


@dataclass(frozen=True)
class RenderRequest:
    """Everything a renderer may use to build a prompt for one chat or generate request.

    ``suffix`` asks for fill-in-the-middle: the last user message is the text before the gap
    and ``suffix`` the text after it (Go templates see them as ``.Prompt`` and ``.Suffix``).
    Messages carry their images and audio clips in ``images`` (base64 strings, audio too, as
    Ollama sends it); :func:`ollama_core.media.media_kind` tells an item's kind.
    """

    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] | None = None
    think: bool | str | None = None
    add_generation_prompt: bool = True
    chat_template: str | None = None
    go_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    suffix: str | None = None


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt ready to tokenize. ``add_bos`` says whether the tokenizer must still add BOS.

    ``media`` holds, for each image or audio item of the messages (their ``images`` entries, in
    message order), the text that stands for it in ``text``: the model's own token such as
    ``<|image|>``/``<|audio|>``, or Ollama's ``[img-N]``. Each one's first occurrence after the
    previous item's is where the item goes; the core replaces them with llama.cpp's media marker.
    """

    text: str
    add_bos: bool = False
    media: tuple[str, ...] = ()


class Renderer(Protocol):
    """Turns a chat (messages, tools, thinking choice, images and audio) into prompt text."""

    def render(self, request: RenderRequest) -> RenderedPrompt: ...


@dataclass(frozen=True)
class RendererSpec:
    """Announces a renderer, chosen by name (a model's ``renderer``) or by architecture."""

    name: str
    factory: Callable[[], Renderer]
    architectures: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedEvent:
    """One piece of parsed model output: ``kind`` is ``content``, ``thinking`` or ``tool_call``."""

    kind: str
    text: str = ""
    tool_call: Mapping[str, Any] | None = None


class Parser(Protocol):
    """A streaming output parser for one response: feed pieces, then finish."""

    def feed(self, text: str) -> list[ParsedEvent]: ...

    def finish(self) -> list[ParsedEvent]: ...


@dataclass(frozen=True)
class ParserSpec:
    """Announces an output parser; ``factory(tools, think)`` makes one per response.

    A factory that also accepts a ``prompt`` keyword receives the rendered prompt, so it can
    tell whether generation starts inside a section the prompt opened (e.g. a thought block).
    ``tool_grammar(tools)``, when given, returns a GBNF grammar that admits only calls to those
    tools in the syntax this parser reads (special tokens may be referenced as ``<|token|>``);
    the server uses it to enforce ``tool_choice``. Without it, a forced call is constrained to
    a bare JSON object ``{"name": ..., "arguments": ...}``, which the default parser reads.
    """

    name: str
    factory: Callable[[Sequence[Mapping[str, Any]] | None, bool], Parser]
    architectures: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    tool_grammar: Callable[[Sequence[Mapping[str, Any]]], str] | None = None


@dataclass(frozen=True)
class Device:
    """One compute device a backend can place model layers on, as discovered now.

    ``id`` names the device to its runtime (a CUDA ``GPU-...`` UUID, usable in
    ``CUDA_VISIBLE_DEVICES``); ``index`` is its position among the devices llama.cpp sees for
    this backend (what ``main_gpu`` refers to). ``compute`` is the compute capability or GPU
    family (``8.9``, ``apple9``), ``driver`` the driver version and ``runtime`` the runtime API
    version the driver supports (CUDA ``12.4``, a macOS version for Metal). ``reserved`` is
    memory the runtime itself takes on the device once a model is loaded (context, kernels),
    which the planner sets aside. ``unified`` marks memory shared with the CPU (Apple Silicon);
    ``flash_attention`` says whether llama.cpp's flash-attention kernels run on the device.
    """

    backend: str
    id: str
    name: str
    total_memory: int
    free_memory: int
    index: int = 0
    compute: str = ""
    driver: str = ""
    runtime: str = ""
    reserved: int = 0
    unified: bool = False
    flash_attention: bool = True


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can be used here, its devices, and why not when it cannot.

    An unavailable backend may still list the devices it found (e.g. GPUs that the installed
    llama-cpp-python build cannot use), so the reason can name them. ``visible_devices_env``
    is the environment variable that restricts a runner to some of the devices by ``id``
    (``CUDA_VISIBLE_DEVICES``); empty when the backend has none.
    """

    available: bool
    reason: str = ""
    devices: tuple[Device, ...] = ()
    visible_devices_env: str = ""


class Backend(Protocol):
    """A compute backend: discovers its devices and says whether this install can use them.

    Backends only describe devices; the core plans where a model's layers go
    (:mod:`ollama_core.backends.plan`) the same way for every backend, from each
    :class:`Device`'s memory figures and flags. ``status()`` is called before every model load,
    so free memory is current; it must not raise for an expected absence (no driver, wrong
    platform) but return ``available=False`` with the reason.
    """

    name: str

    def status(self) -> BackendStatus: ...


@dataclass(frozen=True)
class BackendSpec:
    """Announces a compute backend; ``priority`` orders backends (higher is tried first).

    The first available backend with devices, in priority order, runs the models; the
    built-in CPU backend (lowest priority) is the fallback.
    """

    name: str
    factory: Callable[[], Backend]
    priority: int = 0


@dataclass(frozen=True)
class ApiSurface:
    """A set of HTTP routes to mount on the server.

    ``factory(context)`` returns Litestar route handlers, controllers or routers. It is
    called once when the app is built, after every plugin is loaded.
    """

    name: str
    factory: Callable[[ServerContext], Iterable[Any]]
    description: str = ""
