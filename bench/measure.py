"""The measured cases, the prompts they send, and the samples they collect."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import llama_cpp
from llama_cpp import _logger as llama_cpp_logger

from servers import Mode, Server, Stream

CASE_TIMEOUT = 600.0

SHORT = "Write a long story about a robot who learns to paint, and the people it meets.\n\nChapter 1\n\n"
EMBED_TEXT = "The robot painted the harbor at dawn, with boats, gulls and fishermen carrying their nets to the market."
LONG_TAIL = "\n\nSummarize the text above in detail:"
FILLER = (
    "The harbor town woke slowly under a pale sky, and the smell of salt and bread drifted along the quay.",
    "Fishermen untangled their nets while gulls argued over scraps near the old stone lighthouse.",
    "In a narrow workshop above the bakery, a small robot named Pell sorted brushes by the width of their bristles.",
    "Pell had been built to repair clocks, but it spent its evenings studying the way light moved across water.",
    "Each morning it carried a folding easel to the end of the pier and painted the same view again.",
    "The baker's daughter, Mira, watched from the window and began leaving a warm roll beside the easel.",
    "At first the paintings were precise and flat, every boat outlined, every wave the same gray curve.",
    "Mira told Pell that the sea was never one color, and that shadows on the water were often violet.",
    "The robot measured the shadows with its optical sensors and found, to its surprise, that she was right.",
    "It mixed ultramarine with a touch of crimson and laid the color down in short, uneven strokes.",
    "Old Tomas, who mended sails, said the new painting looked like the harbor felt on a cold spring day.",
    "Word spread, and soon the schoolteacher brought her class to watch the robot work in the afternoons.",
    "The children asked why it painted the lighthouse crooked, and Pell answered that the wind leaned on it.",
    "A storm came in late autumn, tearing shutters loose and scattering the fishing boats across the bay.",
    "For three days nobody went to sea, and Pell painted the storm from the workshop window instead.",
    "When the weather cleared, the town gathered on the quay to count the boats and repair the damage.",
    "Pell repaired the lighthouse clock, which had stopped at the height of the storm, and set it running.",
    "That winter the mayor asked whether the robot would paint a mural on the wall of the market hall.",
    "Pell spent weeks on sketches, showing the fishermen, the baker, the teacher and the children together.",
    "Mira ground pigments for it, and Tomas built a scaffold from spare masts and lengths of rope.",
)


@dataclass(frozen=True)
class Case:
    """One row of the results table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    mode: Mode


@dataclass(frozen=True)
class Plan:
    """How much of each case to run per server per round."""

    tokens: int = 128
    decode_reps: int = 3
    ttft_reps: int = 3
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    concurrent_reps: int = 2
    embed_requests: tuple[tuple[int, int], ...] = ((1, 16), (32, 3))

    def cases(self) -> list[Case]:
        """The table rows this plan fills, in order."""
        rows = [
            Case("decode", f"decode, 1 stream x {self.tokens} tok (after 1st token)", "tok/s", True, Mode.SINGLE),
            Case("ttft_short", "TTFT, ~30-token prompt", "ms", False, Mode.SINGLE),
            Case("ttft_long", "TTFT, ~500-token prompt", "ms", False, Mode.SINGLE),
        ]
        rows += [
            Case(f"aggregate_{n}", f"aggregate, {n} stream{'s' * (n > 1)} x {self.tokens} tok (4 slots)", "tok/s",
                 True, Mode.CONCURRENT)
            for n in self.concurrency
        ]
        if 4 in self.concurrency:
            rows.append(Case("ttft_4x", "TTFT, 4 concurrent ~30-token prompts", "ms", False,
                             Mode.CONCURRENT))
        rows += [
            Case(f"embed_{batch}", f"embeddings, batch {batch}", "emb/s", True, Mode.EMBED)
            for batch, _ in self.embed_requests
        ]
        return rows


QUICK = Plan(tokens=32, decode_reps=1, ttft_reps=1, concurrency=(1, 4), concurrent_reps=1,
             embed_requests=((1, 4), (32, 1)))


class Prompts:
    """Fresh prompts: each starts with a different random number, so no prompt cache can help.

    The same seed gives the same sequence, so every server is sent the same prompts in a round.
    """

    def __init__(self, seed: str, long_body: str) -> None:
        self.rng = random.Random(seed)
        self.long_body = long_body

    def _tag(self) -> str:
        return str(self.rng.randrange(100_000, 1_000_000))

    def short(self) -> str:
        """A ~30-token instruction."""
        return f"{self._tag()}. {SHORT}"

    def long(self) -> str:
        """A ~500-token passage followed by an instruction."""
        return f"{self._tag()}. {self.long_body}{LONG_TAIL}"

    def embed_input(self) -> str:
        """A ~25-token sentence to embed."""
        return f"{self._tag()}. {EMBED_TEXT}"


def long_body(count_tokens: Callable[[str], int], target: int = 500) -> str:
    """Filler sentences whose full long prompt is about ``target`` tokens long."""
    sentences: list[str] = []
    while count_tokens(f"123456. {' '.join(sentences)}{LONG_TAIL}") < target:
        sentences.append(FILLER[len(sentences) % len(FILLER)])
    return " ".join(sentences)


@dataclass
class Results:
    """Samples per (server, case), the first error per (server, case), streams that stopped early, the
    share of the CPUs other processes took during each phase kept, and the text of each decode stream."""

    samples: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    short_streams: Counter[str] = field(default_factory=Counter)
    busy: list[tuple[str, float]] = field(default_factory=list)
    outputs: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def merge(self, other: Results) -> None:
        """Add the samples, errors and counts of ``other``."""
        for key, values in other.samples.items():
            self.samples[key].extend(values)
        for key, reason in other.errors.items():
            self.errors.setdefault(key, reason)
        self.short_streams.update(other.short_streams)
        for name, texts in other.outputs.items():
            self.outputs[name].extend(texts)

    def fail(self, server: str, keys: list[str], exc: BaseException) -> None:
        """Record ``exc`` as the reason ``server`` has no value for ``keys``."""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for key in keys:
            self.errors.setdefault((server, key), reason[:160])


async def _streams(server: Server, client: httpx.AsyncClient, prompts: list[str], tokens: int) -> list[Stream]:
    """Send ``prompts`` all at once; return their streams in order."""
    out: list[Stream | None] = [None] * len(prompts)

    async def one(i: int) -> None:
        out[i] = await server.generate(client, prompts[i], tokens)

    async with anyio.create_task_group() as tg:
        for i in range(len(prompts)):
            tg.start_soon(one, i)
    return [s for s in out if s is not None]


class Runner:
    """Runs one mode's cases against one started server, adding samples to ``results``."""

    def __init__(self, plan: Plan, results: Results, server: Server, client: httpx.AsyncClient,
                 prompts: Prompts) -> None:
        self.plan = plan
        self.results = results
        self.server = server
        self.client = client
        self.prompts = prompts

    def _add(self, key: str, value: float) -> None:
        self.results.samples[(self.server.name, key)].append(value)

    def _count(self, streams: list[Stream]) -> None:
        self.results.short_streams[self.server.name] += sum(s.tokens < self.plan.tokens for s in streams)

    async def _case(self, keys: list[str], body: Callable[[], Awaitable[None]]) -> None:
        try:
            with anyio.fail_after(CASE_TIMEOUT):
                await body()
        except Exception as exc:
            self.results.fail(self.server.name, keys, exc)

    async def run(self, mode: Mode) -> None:
        """Warm up, then run every case of ``mode``."""
        if mode is Mode.SINGLE:
            await self.server.generate(self.client, self.prompts.short(), 8)
            await self._case(["decode", "ttft_short"], self._decode)
            await self._case(["ttft_long"], self._ttft_long)
        elif mode is Mode.CONCURRENT:
            await _streams(self.server, self.client, [self.prompts.short() for _ in range(4)], 8)
            for n in self.plan.concurrency:
                keys = [f"aggregate_{n}"] + (["ttft_4x"] if n == 4 else [])
                await self._case(keys, lambda n=n: self._aggregate(n))
        else:
            for batch, _ in self.plan.embed_requests:
                await self._case([f"embed_{batch}"], lambda batch=batch: self._warm_embed(batch))
            for batch, requests in self.plan.embed_requests:
                if (self.server.name, f"embed_{batch}") not in self.results.errors:
                    await self._case([f"embed_{batch}"], lambda b=batch, r=requests: self._embed(b, r))

    async def _decode(self) -> None:
        for _ in range(self.plan.decode_reps):
            stream = await self.server.generate(self.client, self.prompts.short(), self.plan.tokens)
            self._count([stream])
            self.results.outputs[self.server.name].append(stream.text)
            self._add("decode", stream.decode_rate)
            self._add("ttft_short", stream.ttft)

    async def _ttft_long(self) -> None:
        for _ in range(self.plan.ttft_reps):
            self._add("ttft_long", (await self.server.generate(self.client, self.prompts.long(), 2)).ttft)

    async def _aggregate(self, n: int) -> None:
        for _ in range(self.plan.concurrent_reps):
            prompts = [self.prompts.short() for _ in range(n)]
            start = time.perf_counter()
            streams = await _streams(self.server, self.client, prompts, self.plan.tokens)
            elapsed = max(s.end for s in streams) - start
            self._count(streams)
            self._add(f"aggregate_{n}", sum(s.tokens for s in streams) / elapsed)
            if n == 4:
                for s in streams:
                    self._add("ttft_4x", s.ttft)

    async def _warm_embed(self, batch: int) -> None:
        await self.server.embed(self.client, [self.prompts.embed_input() for _ in range(batch)])

    async def _embed(self, batch: int, requests: int) -> None:
        start = time.perf_counter()
        for _ in range(requests):
            await self.server.embed(self.client, [self.prompts.embed_input() for _ in range(batch)])
        self._add(f"embed_{batch}", batch * requests / (time.perf_counter() - start))


def token_counter(model: Path) -> Callable[[str], int]:
    """Counts tokens of a text with the model's own tokenizer (vocabulary only, no weights)."""
    llama_cpp_logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    handle = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
    if not handle:
        raise RuntimeError(f"cannot read the vocabulary of {model}")
    vocab = llama_cpp.llama_model_get_vocab(handle)

    def count(text: str) -> int:
        data = text.encode()
        return -llama_cpp.llama_tokenize(vocab, data, len(data), None, 0, False, False)

    return count
