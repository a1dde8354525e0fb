"""Inference for every API surface: model checks, options, prompts, scheduling, runners, parsing.

Surfaces (native ``/api/*``, OpenAI ``/v1/*``) translate their wire types into calls here and
translate the resulting :class:`Chunk`/:class:`Final` stream back. Data flows one way:
surface -> :class:`Inference` -> scheduler -> runner -> llama.cpp, and back as a stream.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import sys
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ollama_core import metrics
from ollama_core.backends.discovery import discover
from ollama_core.backends.plan import LoadPlan, PlanRequest, PlanSettings, plan_load
from ollama_core.descriptors import Parser, RenderedPrompt, RenderRequest
from ollama_core.errors import RequestError
from ollama_core.generation import Chunk, Final, ThinkingFirst, finish, parse_chunk
from ollama_core.gguf import GGUFError
from ollama_core.media import DEFAULT_SAMPLE_RATE, MEDIA_MARKER, Media, collect_media, mark_media
from ollama_core.model_facts import ModelFacts, ModelInspector
from ollama_core.names import InvalidNameError, ModelName
from ollama_core.options import DEFAULT_OPTIONS, OptionTypeError, OptionValueError, merge_options
from ollama_core.plugins import Registries
from ollama_core.runner import RunnerProcess
from ollama_core.runner.protocol import Done, Embed, Generate, Load, Token
from ollama_core.runner.protocol import Options as SamplingOptions
from ollama_core.scheduler import LoadedModel, LoadRequest, NeedsRoom, Scheduler
from ollama_core.settings import FOREVER, Settings, parse_duration
from ollama_core.store import Model, ModelNotFoundError, Store, load_model

log = logging.getLogger(__name__)

DEFAULT_NUM_CTX = 4096
LOAD_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap")
_SAMPLING = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n", "repeat_penalty",
             "presence_penalty", "frequency_penalty", "seed")


@dataclass
class EmbedResult:
    """Pooled vectors (not normalised) and what they cost."""

    vectors: list[list[float]]
    prompt_eval_count: int
    total_duration: int
    load_duration: int


@dataclass(frozen=True)
class Target:
    """A resolved model: what is stored and what is known about it."""

    requested: str
    model: Model
    facts: ModelFacts

    @property
    def display(self) -> str:
        """The model's short name, as responses carry it."""
        return self.model.name.display()


def parse_keep_alive(value: str | float | int | bool | None) -> float | None:
    """Seconds to keep a model loaded (``inf`` for forever); ``None`` keeps the current setting."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise RequestError(400, f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, (int, float)):
        if math.isnan(value):
            raise RequestError(400, "invalid keep_alive")
        return FOREVER if value < 0 else float(value)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None


MEDIA_ITEM_TOKENS = 768
"""What an image or audio item counts for when a chat is fitted into the window (Ollama's figure)."""


class Inference:
    """Runs generate, chat and embedding requests on runners managed by one :class:`Scheduler`."""

    def __init__(self, settings: Settings, store: Store, inspector: ModelInspector, registries: Registries) -> None:
        self.settings = settings
        self.store = store
        self.inspector = inspector
        self.registries = registries
        self._plans: weakref.WeakKeyDictionary[RunnerProcess, LoadPlan] = weakref.WeakKeyDictionary()
        self._repack = True
        self.scheduler = Scheduler(
            self._start_runner,
            max_loaded=settings.max_loaded_models,
            max_queue=settings.max_queue,
            default_keep_alive=settings.keep_alive,
        )

    def resolve(self, requested: str, not_found: str) -> Target:
        """The stored model a request names; ``not_found`` is the 404 message."""
        try:
            name = ModelName.parse(requested)
        except InvalidNameError:
            raise RequestError(400, "invalid model name") from None
        try:
            model = load_model(self.store, name)
        except ModelNotFoundError:
            raise RequestError(404, not_found) from None
        try:
            facts = self.inspector.facts(model)
        except (GGUFError, OSError) as exc:
            raise RequestError(500, f"{exc}; this model may be incompatible with this server") from None
        return Target(requested, model, facts)

    def options(self, target: Target, request_options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults, then the model's parameters, then the request's options, checked."""
        try:
            merged = merge_options(DEFAULT_OPTIONS, target.model.parameters, request_options or {})
        except (OptionTypeError, OptionValueError) as exc:
            raise RequestError(400, str(exc)) from None
        trained = target.facts.details.context_length or 0
        num_ctx = int(merged.get("num_ctx") or self.settings.context_length or DEFAULT_NUM_CTX)
        if request_options is None or "num_ctx" not in request_options:
            if "num_ctx" not in target.model.parameters and trained:
                num_ctx = min(num_ctx, trained)
        merged["num_ctx"] = max(4, num_ctx)
        return merged

    def _load_request(self, target: Target, options: Mapping[str, Any]) -> LoadRequest:
        embedding = "embedding" in target.facts.capabilities and "completion" not in target.facts.capabilities
        parallel = 1 if embedding else self.settings.num_parallel
        load_opts = tuple((k, options.get(k)) for k in LOAD_OPTIONS)
        key = (target.model.model_digest, tuple(target.model.adapter_digests), tuple(target.model.projector_digests),
               embedding, load_opts)
        return LoadRequest(key=key, name=target.model.model_digest or "", num_parallel=parallel,
                           payload=(target, dict(options), embedding), label=target.display)

    async def _start_runner(self, request: LoadRequest, others_loaded: bool) -> RunnerProcess:
        target, options, embedding = request.payload
        model = target.model
        if model.model_path is None:
            raise RequestError(400, f"{target.requested!r} has no model weights")
        plan = await anyio.to_thread.run_sync(self._plan, target, options, request.num_parallel, embedding)
        if plan.short_of_memory and others_loaded:
            raise NeedsRoom(plan.reason)
        log.info("%s: %s", target.display, plan.describe())
        config = Load(
            model_path=str(model.model_path),
            num_ctx=int(options["num_ctx"]),
            num_parallel=request.num_parallel,
            num_batch=int(options.get("num_batch") or 512),
            n_gpu_layers=plan.n_gpu_layers,
            main_gpu=plan.main_gpu,
            tensor_split=list(plan.tensor_split),
            num_thread=int(options.get("num_thread") or 0),
            use_mmap=options.get("use_mmap"),
            flash_attn=plan.flash_attn,
            kv_cache_type=plan.kv_cache_type,
            embedding=embedding,
            projector_path=str(model.projector_paths[0]) if model.projector_paths and not embedding else None,
            lora_paths=[str(p) for p in model.adapter_paths],
            repack=self._repack,
        )
        env = {**os.environ, **plan.env} if plan.env else None
        runner = await RunnerProcess.start(config, load_timeout=self.settings.load_timeout, env=env, python=sys.executable)
        self._repack = self._repack and runner.config.repack
        self._plans[runner] = plan
        return runner

    def _plan(self, target: Target, options: Mapping[str, Any], num_parallel: int, embedding: bool) -> LoadPlan:
        """Where the model's layers go, given the devices the backends report now."""
        gguf = target.facts.gguf
        if gguf is None:
            raise RequestError(400, f"{target.requested!r} has no GGUF model weights")
        num_ctx = int(options["num_ctx"])
        num_gpu = options.get("num_gpu")
        main_gpu = options.get("main_gpu")
        request = PlanRequest(
            num_ctx=num_ctx,
            num_parallel=num_parallel,
            num_batch=num_ctx if embedding else int(options.get("num_batch") or 512),
            num_gpu=int(num_gpu) if num_gpu is not None else None,
            main_gpu=int(main_gpu) if main_gpu is not None else None,
        )
        discovery = discover(self.registries.values("backends"))
        settings = PlanSettings.from_settings(self.settings)
        return plan_load(gguf, discovery, request, settings, projector=target.facts.projector)

    def plan_of(self, loaded: LoadedModel) -> LoadPlan | None:
        """The memory plan a loaded model's runner was started with (None for runners started otherwise)."""
        return self._plans.get(loaded.runner)

    async def load(self, target: Target, options: Mapping[str, Any], keep_alive: float | None) -> LoadedModel:
        """Load the model (if needed) without generating: empty prompt or messages."""
        return await self.scheduler.load_only(self._load_request(target, options), keep_alive)

    async def unload(self, target: Target) -> None:
        """Unload every runner of this model now, or when its requests finish."""
        await self.scheduler.expire(target.model.model_digest or "")

    def render(
        self,
        target: Target,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None,
        think: bool | str | None,
        template: str | None = None,
        suffix: str | None = None,
    ) -> RenderedPrompt:
        """The prompt for a chat, by the model's renderer (a plugin's, or the default); with
        ``suffix``, a fill-in-the-middle prompt whose prefix is the last user message.

        The renderer's text for each image or audio item (:attr:`RenderedPrompt.media`) is
        replaced by llama.cpp's media marker, so the text is ready for :meth:`generate`'s
        ``media``; ``media`` keeps the renderer's placeholders."""
        config = target.model.config
        spec = self.registries.renderer_for(config.renderer or None, target.facts.architecture or None)
        if spec is None:
            raise RequestError(500, "no prompt renderer is available")
        gguf = target.facts.gguf
        metadata = gguf.metadata if gguf is not None else {}
        request = RenderRequest(
            messages=messages,
            tools=tools,
            think=think,
            chat_template=_str(metadata.get("tokenizer.chat_template")),
            go_template=template if template is not None else target.model.template,
            bos_token=_special_token(gguf, "bos"),
            eos_token=_special_token(gguf, "eos"),
            metadata=metadata,
            suffix=suffix or None,
        )
        try:
            rendered = spec.factory().render(request)
        except ValueError as exc:
            raise RequestError(400, f"template error: {exc}") from None
        if not rendered.media:
            return rendered
        return RenderedPrompt(text=mark_media(rendered.text, rendered.media), add_bos=rendered.add_bos,
                              media=rendered.media)

    async def render_chat(
        self,
        target: Target,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None,
        think: bool | str | None,
        options: Mapping[str, Any],
        truncate: bool,
    ) -> tuple[list[Mapping[str, Any]], RenderedPrompt]:
        """The messages of a chat that go to the model, and their prompt. With ``truncate``, as
        Ollama truncates a chat: the most recent messages whose prompt fits ``num_ctx``, every
        system message before them, and the last message whatever its size. Each image or audio
        item counts as :data:`MEDIA_ITEM_TOKENS` tokens. A prompt is tokenized (loading the model)
        only when its length in bytes does not already show that it fits."""
        num_ctx = int(options["num_ctx"])
        rendered: dict[int, RenderedPrompt] = {}

        def kept(start: int) -> list[Mapping[str, Any]]:
            return [m for m in messages[:start] if m.get("role") == "system"] + list(messages[start:])

        def render(start: int) -> RenderedPrompt:
            if start not in rendered:
                rendered[start] = self.render(target, kept(start), tools=tools, think=think)
            return rendered[start]

        async def fits(start: int) -> bool:
            text = render(start).text
            media = MEDIA_ITEM_TOKENS * sum(len(m.get("images") or ()) for m in kept(start))
            if len(text.encode()) + 2 + media <= num_ctx:
                return True
            return len(await self.tokenize(target, text.replace(MEDIA_MARKER, ""), options)) + media <= num_ctx

        if not truncate or len(messages) < 2 or await fits(0):
            return list(messages), render(0)
        low, high = 1, len(messages) - 1
        while low < high:
            middle = (low + high) // 2
            if await fits(middle):
                high = middle
            else:
                low = middle + 1
        log.debug("%s: %d of %d messages fit the %d-token window", target.display, len(kept(high)), len(messages),
                  num_ctx)
        return kept(high), render(high)

    def audio_sample_rate(self, target: Target) -> int:
        """The sample rate the model's projector takes audio at (``clip.audio.sample_rate``, else 16 kHz)."""
        projector = target.facts.projector
        rate = projector.metadata.scalar("clip.audio.sample_rate") if projector is not None else None
        return rate if isinstance(rate, int) and rate > 0 else DEFAULT_SAMPLE_RATE

    async def decode_media(self, target: Target, messages: Sequence[Mapping[str, Any]]) -> list[Media]:
        """The images and audio of ``messages`` (:func:`ollama_core.media.collect_media`) for
        :meth:`generate`, decoded in a worker thread: decoding and resampling must not hold up the
        event loop that streams every other request's tokens."""
        rate = self.audio_sample_rate(target)
        return await anyio.to_thread.run_sync(lambda: collect_media(messages, sample_rate=rate))

    def _check_media(self, target: Target, prompt: str | list[int], media: Sequence[Media]) -> None:
        """400 unless the model's projector reads every kind of item and the prompt has a marker for each."""
        for kind in sorted({item.kind for item in media}):
            capability = "vision" if kind == "image" else "audio"
            if not target.model.projector_paths or capability not in target.facts.capabilities:
                raise RequestError(400, f'"{target.requested}" does not support {capability}')
        places = prompt.count(MEDIA_MARKER) if isinstance(prompt, str) else 0
        if places != len(media):
            raise RequestError(400, f"the prompt has {places} places for images or audio but "
                                    f"the request carries {len(media)}")

    def parser(self, target: Target, tools: Sequence[Mapping[str, Any]] | None, think: bool, prompt: str = "") -> Parser:
        """A fresh output parser for one response (given the rendered ``prompt`` when it wants it)."""
        config = target.model.config
        spec = self.registries.parser_for(config.parser or None, target.facts.architecture or None)
        if spec is None:
            raise RequestError(500, "no output parser is available")
        if prompt and "prompt" in inspect.signature(spec.factory).parameters:
            return spec.factory(tools, think, prompt=prompt)
        return spec.factory(tools, think)

    def tool_grammar(self, target: Target, tools: Sequence[Mapping[str, Any]]) -> str | None:
        """A grammar admitting only calls to ``tools`` in the model's own syntax, when its parser offers one."""
        config = target.model.config
        spec = self.registries.parser_for(config.parser or None, target.facts.architecture or None)
        if spec is None or spec.tool_grammar is None:
            return None
        try:
            return spec.tool_grammar(tools)
        except ValueError as exc:
            raise RequestError(400, f"cannot constrain tool calls: {exc}") from None

    async def generate(
        self,
        target: Target,
        prompt: str | list[int],
        *,
        add_bos: bool,
        options: Mapping[str, Any],
        keep_alive: float | None,
        parser: Parser | None,
        format: str | dict[str, Any] | None = None,
        grammar: str | None = None,
        think: bool = False,
        shift: bool = True,
        truncate: bool = True,
        return_context: bool = False,
        media: Sequence[Media] = (),
        logprobs: bool = False,
        top_logprobs: int = 0,
    ) -> AsyncIterator[Chunk | Final]:
        """Generate on the model's runner, yielding parsed chunks and then one :class:`Final`.

        ``media`` (see :func:`ollama_core.media.collect_media`) needs a text ``prompt`` holding
        the media marker once per item, as :meth:`render` leaves it.

        ``grammar`` (GBNF) constrains the output like ``format`` does; give at most one of them.
        With ``think`` and a ``format`` or ``grammar``, it constrains only the answer, as Ollama does:
        generation starts unconstrained; when the parser sees the first answer content (or tool
        call), that sequence is cancelled and generation resumes from the end of the thinking
        with the format's grammar (see :class:`ollama_core.generation.ThinkingFirst`). Closing the iterator early
        cancels the sequence in the runner. ``logprobs`` puts each generated token's log
        probability, with its ``top_logprobs`` alternatives, on the chunk that carries its text.
        """
        started = time.monotonic_ns()
        if media:
            self._check_media(target, prompt, media)
        job = Generate(
            prompt=prompt,
            add_special=add_bos,
            parse_special=True,
            options=SamplingOptions(**{k: options[k] for k in _SAMPLING if options.get(k) is not None}),
            format=format or None,
            grammar=grammar or None,
            stop=list(options.get("stop") or []),
            num_predict=int(options.get("num_predict", -1)),
            num_keep=int(options.get("num_keep", 4)),
            shift=shift,
            truncate=truncate,
            return_context=return_context,
            media=list(media),
            logprobs=logprobs,
            top_logprobs=top_logprobs,
        )
        async with self.scheduler.acquire(self._load_request(target, options), keep_alive) as loaded:
            load_duration = time.monotonic_ns() - started
            first: ThinkingFirst | None = None
            if (format or grammar) and think and parser is not None and isinstance(prompt, str):
                first = ThinkingFirst(parser)
                free = msgspec.structs.replace(job, format=None, grammar=None)
                async with aclosing(loaded.runner.generate(free)) as events:
                    async for event in events:
                        if isinstance(event, Token):
                            chunk = first.feed(event.text)
                            if first.kept is None:
                                chunk.logprobs = event.logprobs
                            if chunk:
                                yield chunk
                            if first.kept is not None:
                                break
                        elif isinstance(event, Done):
                            async for item in finish(event, parser, started, load_duration, target):
                                yield item
                            return
                assert first.kept is not None
                job = first.resume(job, prompt + first.kept)
            async with aclosing(loaded.runner.generate(job)) as events:
                async for event in events:
                    if isinstance(event, Token):
                        chunk = parse_chunk(parser, event.text) if parser else Chunk(content=event.text)
                        chunk.logprobs = event.logprobs
                        if chunk:
                            yield chunk
                    elif isinstance(event, Done):
                        if first is not None:
                            first.add_metrics(event)
                        async for item in finish(event, parser, started, load_duration, target):
                            yield item

    async def embed(
        self,
        target: Target,
        inputs: Sequence[str | list[int]],
        *,
        truncate: bool,
        options: Mapping[str, Any],
        keep_alive: float | None,
    ) -> EmbedResult:
        """Pooled embeddings of every input, in order."""
        started = time.monotonic_ns()
        async with self.scheduler.acquire(self._load_request(target, options), keep_alive) as loaded:
            load_duration = time.monotonic_ns() - started
            if not inputs:
                return EmbedResult([], 0, time.monotonic_ns() - started, load_duration)
            result = await loaded.runner.embed(Embed(inputs=list(inputs), truncate=truncate))
        metrics.record_embedding(target.display, sum(result.token_counts))
        return EmbedResult(
            vectors=result.embeddings,
            prompt_eval_count=sum(result.token_counts),
            total_duration=time.monotonic_ns() - started,
            load_duration=load_duration,
        )

    async def tokenize(self, target: Target, text: str, options: Mapping[str, Any]) -> list[int]:
        """Token ids of ``text`` with the model's tokenizer (loads the model; needs no free slot)."""
        async with self.scheduler.acquire(self._load_request(target, options), None, slot=False) as loaded:
            return await loaded.runner.tokenize(text)

    async def detokenize(self, target: Target, tokens: list[int], options: Mapping[str, Any]) -> str:
        """Text of ``tokens`` (loads the model; needs no free slot)."""
        async with self.scheduler.acquire(self._load_request(target, options), None, slot=False) as loaded:
            return await loaded.runner.detokenize(tokens)

    async def shutdown(self) -> None:
        """Stop every runner (server shutdown)."""
        await self.scheduler.shutdown()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _special_token(gguf: Any, which: str) -> str:
    if gguf is None:
        return ""
    token_id = gguf.metadata.scalar(f"tokenizer.ggml.{which}_token_id")
    if not isinstance(token_id, int):
        return ""
    try:
        tokens = gguf.metadata["tokenizer.ggml.tokens"]
    except (KeyError, GGUFError, OSError):
        return ""
    return str(tokens[token_id]) if 0 <= token_id < len(tokens) else ""
