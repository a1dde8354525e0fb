"""The runner subprocess and its client, against the real SmolLM2-135M GGUF."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing
from pathlib import Path

import anyio
import msgspec
import pytest

from ollama_core.runner import (
    Done,
    Embed,
    Generate,
    Load,
    Options,
    RunnerCrashedError,
    RunnerLoadError,
    RunnerProcess,
    RunnerRequestError,
    Token,
)
from ollama_core.runner.protocol import Cancel, FrameDecoder, FrameEncoder, FromRunner, Media, ToRunner

pytestmark = pytest.mark.anyio

GREEDY = Options(temperature=0)
ENDLESS = 'root ::= "la " root'
POEM = "<|im_start|>user\nWrite a poem about the sea.<|im_end|>\n<|im_start|>assistant\n"


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def runner(smollm2_gguf: Path) -> AsyncIterator[RunnerProcess]:
    """One runner with four slots for the module."""
    proc = await RunnerProcess.start(Load(model_path=str(smollm2_gguf), num_ctx=1024, num_parallel=4))
    yield proc
    await proc.close()


async def generate(runner: RunnerProcess, request: Generate) -> tuple[str, Done]:
    pieces: list[str] = []
    with anyio.fail_after(300):
        async with aclosing(runner.generate(request)) as events:
            async for event in events:
                if isinstance(event, Token):
                    pieces.append(event.text)
                else:
                    return "".join(pieces), event
    raise AssertionError("no Done frame")


def test_frames_survive_arbitrary_splits() -> None:
    encoder = FrameEncoder()
    data = encoder.encode(Generate(prompt=[1, 2, 3], id=7, stop=["x"])) + encoder.encode(Cancel(7))
    decoder = FrameDecoder(ToRunner)
    frames = [frame for byte in range(len(data)) for frame in decoder.feed(data[byte : byte + 1])]
    assert frames == [Generate(prompt=[1, 2, 3], id=7, stop=["x"]), Cancel(7)]
    assert FrameDecoder(FromRunner).feed(encoder.encode(Token(3, "é"))) == [Token(3, "é")]
    media = Generate(prompt="<__media__>", media=[Media(kind="audio", data=b"\0" * 8), Media(kind="image", data=b"x")])
    assert FrameDecoder(ToRunner).feed(encoder.encode(media)) == [media]


async def test_ready_reports_the_model(runner: RunnerProcess) -> None:
    assert runner.ready is not None
    assert runner.ready.n_ctx == 1024
    assert runner.ready.num_parallel == 4
    assert runner.ready.n_ctx_train == 8192
    assert runner.alive and runner.returncode is None and runner.pid > 0
    assert runner.load_duration > 0


async def test_greedy_is_deterministic_and_batching_does_not_change_it(runner: RunnerProcess) -> None:
    request = Generate(prompt=POEM, options=GREEDY, num_predict=24)
    single, done = await generate(runner, request)
    assert done.done_reason == "length" and done.metrics.eval_count == 24
    results: list[str] = [""] * 4

    async def one(index: int) -> None:
        results[index], _ = await generate(runner, request)

    async with anyio.create_task_group() as group:
        for index in range(4):
            group.start_soon(one, index)
    assert results == [single] * 4


async def test_concurrent_requests_share_decode_batches(runner: RunnerProcess) -> None:
    dones: list[Done] = []

    async def one(index: int) -> None:
        request = Generate(prompt=chat(f"Tell me a fact about the number {index}."), options=GREEDY, num_predict=12)
        _, done = await generate(runner, request)
        dones.append(done)

    async with anyio.create_task_group() as group:
        for index in range(6):
            group.start_soon(one, index)
    assert len(dones) == 6
    assert all(done.metrics.max_batch_seqs >= 2 for done in dones)
    assert max(done.metrics.max_batch_seqs for done in dones) == 4


async def test_plain_greedy_picks_what_llama_cpps_greedy_sampler_picks(runner: RunnerProcess) -> None:
    # A grammar that admits any text keeps the request on llama.cpp's sampler chain; without
    # one, a plain greedy request takes the argmax of the logits directly.
    chain = Generate(prompt=POEM, options=GREEDY, num_predict=48, grammar="root ::= [^\\x00]*")
    direct = msgspec.structs.replace(chain, grammar=None)
    (text, done), (chain_text, chain_done) = await generate(runner, direct), await generate(runner, chain)
    assert done.metrics.eval_count == 48
    assert (text, done.tokens) == (chain_text, chain_done.tokens)


async def test_logprobs_come_with_the_text_of_their_tokens(runner: RunnerProcess) -> None:
    request = Generate(prompt=POEM, options=GREEDY, num_predict=16, logprobs=True, top_logprobs=3)
    tokens: list[Token] = []
    with anyio.fail_after(300):
        async with aclosing(runner.generate(request)) as events:
            async for event in events:
                if isinstance(event, Token):
                    tokens.append(event)
                else:
                    done = event
    logprobs = [entry for token in tokens for entry in token.logprobs]
    assert len(logprobs) == done.metrics.eval_count == 16
    assert "".join(entry.token for entry in logprobs) == "".join(token.text for token in tokens)
    for entry in logprobs:
        assert entry.logprob <= 0 and bytes(entry.bytes).decode() == entry.token
        ranked = [alt.logprob for alt in entry.top_logprobs]
        assert len(ranked) == 3 and ranked == sorted(ranked, reverse=True)
        # Greedy picks the most likely token.
        assert entry.top_logprobs[0].token == entry.token and entry.top_logprobs[0].logprob == entry.logprob
        assert sum(math.exp(x) for x in ranked) <= 1 + 1e-6
    # Without the option no logprobs travel; with a stop string, the stopped tokens are not reported.
    plain, _ = await generate(runner, msgspec.structs.replace(request, logprobs=False))
    assert plain == "".join(token.text for token in tokens)
    stop = plain.split()[2]
    stopped: list[Token] = []
    async with aclosing(runner.generate(msgspec.structs.replace(request, stop=[stop]))) as events:
        async for event in events:
            if isinstance(event, Token):
                stopped.append(event)
    text = "".join(token.text for token in stopped)
    assert text == plain[: plain.index(stop)]
    assert "".join(entry.token for token in stopped for entry in token.logprobs).startswith(text)


async def test_stop_strings_end_generation_and_are_not_emitted(runner: RunnerProcess) -> None:
    text, _ = await generate(runner, Generate(prompt=POEM, options=GREEDY, num_predict=32))
    words = text.split()
    stop = f"{words[3]} {words[4]}"
    stopped, done = await generate(runner, Generate(prompt=POEM, options=GREEDY, num_predict=32, stop=[stop, "never-appears"]))
    assert done.done_reason == "stop"
    assert stopped == text[: text.index(stop)]
    assert stop not in stopped


async def test_num_predict_ends_with_length(runner: RunnerProcess) -> None:
    text, done = await generate(runner, Generate(prompt=POEM, options=GREEDY, num_predict=5))
    assert done.done_reason == "length"
    assert done.metrics.eval_count == 5 and len(done.tokens) == 5
    assert done.metrics.eval_duration > 0 and done.metrics.prompt_eval_duration > 0
    assert text == await runner.detokenize(done.tokens)


async def test_seed_reproduces_sampling(runner: RunnerProcess) -> None:
    options = Options(temperature=0.8, seed=1234, top_k=30, min_p=0.02, repeat_penalty=1.1, presence_penalty=0.2)
    request = Generate(prompt=POEM, options=options, num_predict=24)
    first, _ = await generate(runner, request)
    second, _ = await generate(runner, request)
    assert first == second


async def test_json_schema_format_gives_matching_json(runner: RunnerProcess) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    text, done = await generate(
        runner, Generate(prompt=chat("Describe a person as JSON."), options=GREEDY, num_predict=64, format=schema)
    )
    assert done.done_reason == "stop"
    value = json.loads(text)
    assert list(value) == ["name", "age"]
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


async def test_invalid_grammar_is_a_client_error(runner: RunnerProcess) -> None:
    with pytest.raises(RunnerRequestError) as caught:
        await generate(runner, Generate(prompt=POEM, grammar="root ::= undefined-rule"))
    assert caught.value.status == 400


async def test_media_without_a_projector_is_a_client_error(runner: RunnerProcess) -> None:
    with pytest.raises(RunnerRequestError, match="does not support image or audio input") as caught:
        await generate(runner, Generate(prompt="<__media__>", media=[Media(kind="image", data=b"\x89PNG")]))
    assert caught.value.status == 400


async def test_cancel_frees_the_slot(runner: RunnerProcess) -> None:
    endless = [runner.generate(Generate(prompt=chat(f"Sing {n}."), grammar=ENDLESS, num_predict=5000)) for n in range(4)]
    async with AsyncExitStack() as stack:
        for stream in endless[1:]:
            await stack.enter_async_context(aclosing(stream))
        with anyio.fail_after(300):
            for stream in endless:
                assert isinstance(await anext(stream), Token)
            await endless[0].aclose()
            text, done = await generate(runner, Generate(prompt=POEM, options=GREEDY, num_predict=4))
            assert done.metrics.eval_count == 4 and text
            for stream in endless[1:]:
                assert isinstance(await anext(stream), Token)


async def test_a_new_request_fills_the_gap_between_busy_slots(smollm2_gguf: Path) -> None:
    # llama.cpp decodes consecutive slots in one micro-batch and each gap costs another, so a
    # request goes to the slot between two busy ones rather than one past them, even when that
    # slot discards a longer cache.
    runner = await RunnerProcess.start(Load(model_path=str(smollm2_gguf), num_ctx=512, num_parallel=4))
    questions = ["Sing.", "Sing a long song about the sea, the wind, the harbour and the ships.", "Sing.", "Hum."]
    streams = [runner.generate(Generate(prompt=chat(q), grammar=ENDLESS, num_predict=5000)) for q in questions]
    try:
        async with AsyncExitStack() as stack:
            for stream in streams:
                await stack.enter_async_context(aclosing(stream))
            with anyio.fail_after(300):
                for stream in streams:
                    assert isinstance(await anext(stream), Token)
                await streams[1].aclose()
                await streams[3].aclose()
                _, done = await generate(runner, Generate(prompt=chat("Name a colour."), options=GREEDY, num_predict=2))
        assert done.metrics.slot == 1
    finally:
        await runner.close()


async def test_prompt_prefix_is_reused(runner: RunnerProcess) -> None:
    prefix = "<|im_start|>system\nYou are a helpful assistant who answers briefly and precisely.<|im_end|>\n"
    first_prompt = prefix + chat("Name a colour.")
    second_prompt = prefix + chat("Name a fruit.")
    _, first = await generate(runner, Generate(prompt=first_prompt, options=GREEDY, num_predict=2))
    _, second = await generate(runner, Generate(prompt=second_prompt, options=GREEDY, num_predict=2))
    prefix_tokens = len(await runner.tokenize(prefix))
    total = len(await runner.tokenize(second_prompt))
    assert second.metrics.prompt_cached >= prefix_tokens
    assert second.metrics.prompt_eval_count == total - second.metrics.prompt_cached
    assert second.metrics.prompt_eval_count < first.metrics.prompt_eval_count + first.metrics.prompt_cached


async def test_pieces_hold_split_utf8_characters(runner: RunnerProcess) -> None:
    pieces: list[str] = []
    async with aclosing(runner.generate(Generate(prompt="Dragons:", grammar='root ::= "🐉 ü 🐉🐉"', options=GREEDY))) as events:
        async for event in events:
            if isinstance(event, Token):
                pieces.append(event.text)
            else:
                assert event.done_reason == "stop"
                assert len(event.tokens) > len(pieces)
    assert "".join(pieces) == "🐉 ü 🐉🐉"
    assert "\ufffd" not in "".join(pieces)


async def test_tokenize_detokenize_round_trip(runner: RunnerProcess) -> None:
    text = "Hello, wörld! <|im_start|> 123"
    tokens = await runner.tokenize(text)
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert 1 in tokens
    assert 1 not in await runner.tokenize(text, parse_special=False)
    assert await runner.detokenize(tokens) == text


async def test_token_prompts_and_context(runner: RunnerProcess) -> None:
    tokens = await runner.tokenize(POEM)
    from_text, done = await generate(runner, Generate(prompt=POEM, options=GREEDY, num_predict=6, return_context=True))
    from_tokens, _ = await generate(runner, Generate(prompt=tokens, options=GREEDY, num_predict=6))
    assert from_text == from_tokens
    assert done.context == tokens + done.tokens


async def test_generation_runner_serves_embeddings(runner: RunnerProcess) -> None:
    result = await runner.embed(Embed(inputs=["The sea is blue.", "Dragons breathe fire."]))
    assert len(result.embeddings) == 2 and all(len(v) == 576 for v in result.embeddings)
    assert result.token_counts[0] > 0


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def test_embedding_runner_pools_batches_and_truncates(smollm2_gguf: Path) -> None:
    proc = await RunnerProcess.start(Load(model_path=str(smollm2_gguf), num_ctx=64, embedding=True, pooling="mean"))
    try:
        assert proc.ready is not None and proc.ready.embedding_only and proc.ready.pooling == "mean"
        texts = ["The sea is blue.", "Dragons breathe fire.", "The sea is blue."]
        together = await proc.embed(Embed(inputs=texts))
        alone = await proc.embed(Embed(inputs=[texts[1]]))
        assert len(together.embeddings) == 3 and len(together.embeddings[0]) == 576
        assert cosine(together.embeddings[0], together.embeddings[2]) > 0.9999
        assert cosine(together.embeddings[1], alone.embeddings[0]) > 0.999
        assert cosine(together.embeddings[0], together.embeddings[1]) < 0.999
        assert together.token_counts == [len(await proc.tokenize(t, parse_special=False)) for t in texts]
        long = "word " * 200
        truncated = await proc.embed(Embed(inputs=[long]))
        assert truncated.token_counts == [64]
        with pytest.raises(RunnerRequestError, match="the input length exceeds the context length") as caught:
            await proc.embed(Embed(inputs=[long], truncate=False))
        assert caught.value.status == 400
        with pytest.raises(RunnerRequestError, match="does not support generate"):
            await generate(proc, Generate(prompt="hi"))
    finally:
        await proc.close()


async def test_context_shift_and_truncation_in_a_tiny_window(smollm2_gguf: Path) -> None:
    proc = await RunnerProcess.start(Load(model_path=str(smollm2_gguf), num_ctx=48, num_parallel=1))
    try:
        text, done = await generate(proc, Generate(prompt=POEM, options=GREEDY, grammar=ENDLESS, num_predict=80))
        assert done.done_reason == "length" and done.metrics.eval_count == 80
        assert done.metrics.context_shifts >= 1 and text.startswith("la la la")
        _, unshifted = await generate(proc, Generate(prompt=POEM, options=GREEDY, grammar=ENDLESS, num_predict=80, shift=False))
        assert unshifted.done_reason == "length" and unshifted.metrics.eval_count < 80
        _, filled = await generate(proc, Generate(prompt=POEM, options=GREEDY, grammar=ENDLESS, num_predict=-2))
        assert filled.done_reason == "length" and filled.metrics.context_shifts == 0
        assert filled.metrics.eval_count == unshifted.metrics.eval_count
        long_prompt = chat("Repeat this. " * 30)
        _, truncated = await generate(proc, Generate(prompt=long_prompt, options=GREEDY, num_predict=3))
        assert truncated.metrics.prompt_truncated and truncated.metrics.eval_count == 3
        with pytest.raises(RunnerRequestError, match="the input length exceeds the context length"):
            await generate(proc, Generate(prompt=long_prompt, truncate=False))
    finally:
        await proc.close()


async def test_killed_runner_fails_waiting_requests(smollm2_gguf: Path) -> None:
    proc = await RunnerProcess.start(Load(model_path=str(smollm2_gguf), num_ctx=512, num_parallel=2))
    try:
        with anyio.fail_after(300):
            with pytest.raises(RunnerCrashedError, match="SIGKILL"):
                async with aclosing(proc.generate(Generate(prompt=POEM, options=GREEDY, num_predict=5000))) as events:
                    async for event in events:
                        assert isinstance(event, Token)
                        os.kill(proc.pid, signal.SIGKILL)
            assert not proc.alive
            assert proc.returncode == -signal.SIGKILL
            with pytest.raises(RunnerCrashedError):
                await proc.tokenize("hello")
    finally:
        await proc.close()


FAKE_RUNNER = """
import socket, sys, time
from ollama_core.runner.protocol import FrameEncoder, Ready
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[sys.argv.index("--socket") + 1])
sock.recv(1 << 16)
sock.sendall(FrameEncoder().encode(Ready(n_ctx=512, n_ctx_train=512, n_embd=8, n_vocab=8, num_parallel=1,
    n_threads=1, bos=1, eos=2, add_bos=False, embedding_only=False, pooling=None, gpu_offload=False, load_duration=1)))
sock.recv(1 << 16)
sock.sendall(b"\\x00\\x00\\x00\\x03abc")
time.sleep(60)
"""


async def test_a_runner_that_sends_a_malformed_frame_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "fake_runner.py"
    script.write_text(FAKE_RUNNER)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(0o755)
    proc = await RunnerProcess.start(Load(model_path="unused.gguf", num_ctx=512), python=str(python))
    try:
        with anyio.fail_after(30), pytest.raises(RunnerCrashedError, match="malformed frame"):
            await generate(proc, Generate(prompt="hello", num_predict=4))
        assert not proc.alive and proc.returncode is not None
    finally:
        await proc.close()


async def test_load_failures_are_reported(tmp_path: Path) -> None:
    with pytest.raises(RunnerLoadError, match="model file not found"):
        await RunnerProcess.start(Load(model_path=str(tmp_path / "missing.gguf")))
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(RunnerLoadError, match="unable to load model"):
        await RunnerProcess.start(Load(model_path=str(garbage)))


async def test_a_runner_that_faults_while_loading_is_started_again_without_repacked_weights(
    runner: RunnerProcess, smollm2_gguf: Path, tmp_path: Path
) -> None:
    # The first process started through this interpreter dies of SIGSEGV, as a runner does where
    # llama.cpp's AMX kernels fault; the second is a real runner.
    faulted = tmp_path / "faulted"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nif [ ! -e "{faulted}" ]; then touch "{faulted}"; kill -SEGV $$; fi\n'
                      f'exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    proc = await RunnerProcess.start(Load(model_path=str(smollm2_gguf), num_ctx=512), python=str(python))
    try:
        assert faulted.exists()
        assert proc.config.repack is False
        request = Generate(prompt=POEM, options=GREEDY, num_predict=12)
        assert (await generate(proc, request))[0] == (await generate(runner, request))[0]
    finally:
        await proc.close()
    with pytest.raises(RunnerLoadError, match="SIGSEGV"):
        faulted.unlink()
        await RunnerProcess.start(Load(model_path=str(smollm2_gguf), num_ctx=512, repack=False), python=str(python))
