"""Which runner serves a request: load on demand, parallel slots, keep-alive, eviction, the queue.

Mirrors Ollama's scheduler: a loaded model whose load options match is used at once; otherwise
models are loaded one at a time, evicting an idle model (shortest keep-alive first, then least
recently used) when ``OLLAMA_MAX_LOADED_MODELS`` is reached, or when the load plan says the new
model would not fit in the free GPU memory beside the loaded ones (the runner starter raises
:class:`NeedsRoom`; with nothing else loaded it loads what fits). Each model admits ``num_parallel`` requests at once; when
its last request finishes, its keep-alive timer starts. Runners that die are reaped, and the next
request starts a fresh one. Every request that waits, for a load or for a free slot, counts
against ``OLLAMA_MAX_QUEUE``; past it the request gets 503 at once, so memory stays bounded.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from ollama_core.errors import RequestError

log = logging.getLogger(__name__)

QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"
DEFAULT_MAX_LOADED = 3


class Runner(Protocol):
    """What the scheduler needs of a runner: whether it lives, and how to stop it."""

    @property
    def alive(self) -> bool: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class LoadRequest:
    """What to load: ``key`` identifies a model plus the options that force a reload when they differ."""

    key: Hashable
    name: str
    num_parallel: int
    payload: Any = None
    label: str = ""


@dataclass(eq=False)
class LoadedModel:
    """A model with a running runner, as ``/api/ps`` reports it."""

    request: LoadRequest
    runner: Any
    slots: anyio.Semaphore
    keep_alive: float
    loaded_at: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    idle_since: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    expire_now: bool = False

    @property
    def expires_in(self) -> float:
        """Seconds until this model is unloaded (``inf`` for forever); counts from now while busy."""
        if math.isinf(self.keep_alive):
            return math.inf
        if self.in_flight or self.idle_since is None:
            return self.keep_alive
        return max(0.0, self.keep_alive - (time.monotonic() - self.idle_since))


RunnerStarter = Callable[[LoadRequest, bool], Awaitable[Any]]
"""Starts a runner for a request. The flag says whether other models are loaded: only then may
the starter raise :class:`NeedsRoom`, and the scheduler unloads one and calls it again."""


class NeedsRoom(Exception):
    """The model would fit better (e.g. wholly on the GPU) once another loaded model is unloaded."""


class Scheduler:
    """Owns every loaded runner; the only place runners are started or stopped."""

    def __init__(
        self,
        start_runner: RunnerStarter,
        *,
        max_loaded: int = 0,
        max_queue: int = 512,
        default_keep_alive: float = 300.0,
        reap_interval: float = 0.25,
    ) -> None:
        self._start_runner = start_runner
        self.max_loaded = max_loaded or DEFAULT_MAX_LOADED
        self.max_queue = max_queue
        self.default_keep_alive = default_keep_alive
        self.reap_interval = reap_interval
        self._loaded: dict[Hashable, LoadedModel] = {}
        self._pending = 0
        self._load_lock = anyio.Lock()
        self._changed = anyio.Condition()

    @property
    def pending(self) -> int:
        """Requests waiting for a load or a free slot."""
        return self._pending

    def loaded(self) -> list[LoadedModel]:
        """Currently loaded models, longest remaining life first."""
        return sorted(self._loaded.values(), key=lambda m: m.expires_in, reverse=True)

    def find(self, name: str) -> list[LoadedModel]:
        """Loaded models for a model name (any load options)."""
        return [m for m in self._loaded.values() if m.request.name == name]

    @asynccontextmanager
    async def acquire(
        self, request: LoadRequest, keep_alive: float | None, *, slot: bool = True
    ) -> AsyncIterator[LoadedModel]:
        """Hold one parallel slot of the model, loading it first if needed.

        ``keep_alive`` (seconds; ``inf`` forever; ``None`` keeps the model's current setting)
        is applied when the slot is released. Without ``slot`` the model is only kept loaded
        meanwhile: for quick runner calls (tokenizing) that must not wait behind generations.
        """
        if self._pending >= self.max_queue:
            raise RequestError(503, QUEUE_FULL)
        self._pending += 1
        try:
            model = self._usable(request.key) or await self._load_once(request, keep_alive)
            model.in_flight += 1
            model.idle_since = None
        except BaseException:
            self._pending -= 1
            raise
        try:
            try:
                if slot:
                    await model.slots.acquire()
            finally:
                self._pending -= 1
            try:
                model.last_used = time.monotonic()
                yield model
            finally:
                if slot:
                    model.slots.release()
        finally:
            model.in_flight -= 1
            if keep_alive is not None:
                model.keep_alive = keep_alive
            model.last_used = time.monotonic()
            if model.in_flight == 0:
                model.idle_since = time.monotonic()
                if model.keep_alive <= 0:
                    await self._unload(model)
            async with self._changed:
                self._changed.notify_all()

    async def load_only(self, request: LoadRequest, keep_alive: float | None) -> LoadedModel:
        """Load a model without running anything (an empty generate/chat)."""
        async with self.acquire(request, keep_alive) as model:
            return model

    async def expire(self, name: str) -> bool:
        """Unload every runner of ``name`` now, or as soon as its requests finish; whether any was loaded."""
        models = self.find(name)
        for model in models:
            model.keep_alive = 0.0
            if model.in_flight == 0:
                await self._unload(model)
        return bool(models)

    def _usable(self, key: Hashable) -> LoadedModel | None:
        model = self._loaded.get(key)
        if model is not None and model.runner.alive:
            return model
        return None

    async def _load_once(self, request: LoadRequest, keep_alive: float | None) -> LoadedModel:
        async with self._load_lock:
            model = self._usable(request.key)
            if model is not None:
                return model
            await self._make_room(request)
            while True:
                try:
                    return await self._load(request, keep_alive)
                except NeedsRoom as short:
                    victim = self._eviction_victim()
                    if victim is None:
                        raise RuntimeError("the runner starter asked for room with no other model loaded") from short
                    log.info("unloading %s to make room for %s: %s", victim.request.label, request.label, short)
                    await self._wait_idle_and_unload(victim)

    async def _make_room(self, request: LoadRequest) -> None:
        for stale in [m for m in self._loaded.values() if m.request.name == request.name and m.request.key != request.key]:
            await self._wait_idle_and_unload(stale)
        while len(self._loaded) >= self.max_loaded:
            victim = self._eviction_victim()
            assert victim is not None
            await self._wait_idle_and_unload(victim)

    def _eviction_victim(self) -> LoadedModel | None:
        """The model to unload first: an idle one before a busy one, shortest keep-alive, least recently used."""
        victims = sorted(self._loaded.values(), key=lambda m: (m.in_flight > 0, m.keep_alive, m.last_used))
        return victims[0] if victims else None

    async def _wait_idle_and_unload(self, model: LoadedModel) -> None:
        async with self._changed:
            while model.in_flight and model.runner.alive:
                await self._changed.wait()
        await self._unload(model)

    async def _load(self, request: LoadRequest, keep_alive: float | None) -> LoadedModel:
        log.info("loading %s", request.label or request.name)
        runner = await self._start_runner(request, bool(self._loaded))
        model = LoadedModel(
            request=request,
            runner=runner,
            slots=anyio.Semaphore(max(1, request.num_parallel)),
            keep_alive=self.default_keep_alive if keep_alive is None else keep_alive,
        )
        self._loaded[request.key] = model
        return model

    async def _unload(self, model: LoadedModel) -> None:
        if self._loaded.get(model.request.key) is model:
            del self._loaded[model.request.key]
            log.info("unloading %s", model.request.label or model.request.name)
            with anyio.CancelScope(shield=True):
                await model.runner.close()
        async with self._changed:
            self._changed.notify_all()

    async def reap_forever(self) -> None:
        """Unload expired idle models and forget dead runners; runs for the server's lifetime."""
        while True:
            await anyio.sleep(self.reap_interval)
            await self.reap()

    async def reap(self) -> None:
        """One pass of :meth:`reap_forever`."""
        for model in list(self._loaded.values()):
            if not model.runner.alive:
                log.warning("runner for %s exited; it will be restarted on the next request", model.request.name)
                await self._unload(model)
            elif model.in_flight == 0 and model.expires_in <= 0:
                await self._unload(model)

    async def shutdown(self) -> None:
        """Stop every runner."""
        for model in list(self._loaded.values()):
            await self._unload(model)
