"""Per-sequence llama.cpp sampler chains built from Ollama options, and grammars for ``format``."""

from __future__ import annotations

import json
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import llama_grammar

from ollama_core.runner.protocol import Options

JSON_GRAMMAR = llama_grammar.JSON_GBNF


class GrammarError(ValueError):
    """A ``format`` or grammar the runner cannot turn into a usable grammar."""


def resolve_grammar(format: str | dict[str, Any] | None, grammar: str | None) -> str | None:
    """The GBNF grammar for a request: ``format`` ``"json"``, a JSON schema (object or its JSON text), or raw GBNF."""
    if format in (None, "") and not grammar:
        return None
    if format not in (None, "") and grammar:
        raise GrammarError("give either format or grammar, not both")
    if grammar:
        return grammar
    if format == "json":
        return JSON_GRAMMAR
    schema: Any = format
    if isinstance(format, str):
        try:
            schema = json.loads(format)
        except json.JSONDecodeError as exc:
            raise GrammarError(f'invalid format: {format!r}; expected "json" or a valid JSON Schema object') from exc
    if not isinstance(schema, dict):
        raise GrammarError(f'invalid format: {format!r}; expected "json" or a valid JSON Schema object')
    try:
        converted: str = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:
        raise GrammarError(f"unsupported JSON schema: {exc}") from exc
    return converted


class Sampler:
    """A sampler chain for one sequence, in llama.cpp's order:
    grammar, penalties, top-k, typical, top-p, min-p, temperature, then a seeded draw (greedy at temperature 0).
    """

    __slots__ = ("_greedy", "_n_vocab", "_penalties", "_penalty_window", "chain")

    def __init__(self, vocab: Any, options: Options, *, n_ctx: int, grammar: str | None = None) -> None:
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        self.chain: Any = llama_cpp.llama_sampler_chain_init(params)
        self._penalties: Any = None
        self._penalty_window = 0
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        try:
            self._build(vocab, options, n_ctx, grammar)
        except BaseException:
            self.close()
            raise
        self._greedy = options.temperature <= 0 and not grammar and self._penalties is None

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits of output ``index`` of the last decode (negative: from the end).

        A plain greedy chain is an argmax over the logits row; it picks the first of equal
        maxima as llama.cpp's greedy sampler does, without copying the vocabulary into
        candidates first.
        """
        if self._greedy:
            logits = llama_cpp.llama_get_logits_ith(ctx, index)
            if logits:
                return int(np.ctypeslib.as_array(logits, (self._n_vocab,)).argmax())
        token: int = llama_cpp.llama_sampler_sample(self.chain, ctx, index)
        return token

    def _add(self, sampler: Any) -> None:
        if not sampler:
            raise GrammarError("invalid grammar")
        llama_cpp.llama_sampler_chain_add(self.chain, sampler)

    def _build(self, vocab: Any, options: Options, n_ctx: int, grammar: str | None) -> None:
        if grammar:
            self._add(llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root"))
        window = n_ctx if options.repeat_last_n < 0 else options.repeat_last_n
        repeat = options.repeat_penalty if options.repeat_penalty > 0 else 1.0
        if window > 0 and (repeat != 1.0 or options.frequency_penalty != 0.0 or options.presence_penalty != 0.0):
            self._penalties = llama_cpp.llama_sampler_init_penalties(
                llama_cpp.llama_vocab_n_tokens(vocab),
                window,
                repeat,
                options.frequency_penalty,
                options.presence_penalty,
            )
            self._penalty_window = window
            self._add(self._penalties)
        if options.temperature <= 0:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        if options.top_k > 0:
            self._add(llama_cpp.llama_sampler_init_top_k(options.top_k))
        if options.typical_p < 1:
            self._add(llama_cpp.llama_sampler_init_typical(options.typical_p, 1))
        if options.top_p < 1:
            self._add(llama_cpp.llama_sampler_init_top_p(options.top_p, 1))
        if options.min_p > 0:
            self._add(llama_cpp.llama_sampler_init_min_p(options.min_p, 1))
        self._add(llama_cpp.llama_sampler_init_temp(options.temperature))
        seed = llama_cpp.LLAMA_DEFAULT_SEED if options.seed < 0 else options.seed & 0xFFFFFFFF
        self._add(llama_cpp.llama_sampler_init_dist(seed))

    def feed_prompt(self, tokens: list[int]) -> None:
        """Let the repetition penalties see the end of the prompt (the grammar never sees it)."""
        if self._penalties is None:
            return
        accept = llama_cpp.llama_sampler_accept
        for token in tokens[-self._penalty_window :]:
            accept(self._penalties, token)

    def close(self) -> None:
        """Free the chain and every sampler in it."""
        if self.chain:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None
            self._penalties = None
