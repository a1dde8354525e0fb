"""The server's side of a runner: start the subprocess, multiplex requests over its socket, stop it.

No background task is needed: the socket is an asyncio protocol (the server runs on asyncio),
so the event loop hands it the runner's bytes as they arrive; it queues each frame for the
request it belongs to and wakes that request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import cast

import anyio
import anyio.abc
import msgspec

from ollama_core.errors import RequestError
from ollama_core.runner.protocol import (
    Cancel,
    Detokenize,
    Done,
    Embed,
    Embeddings,
    Error,
    FrameDecoder,
    FrameEncoder,
    FrameError,
    FromRunner,
    Generate,
    Inspect,
    Inspection,
    Load,
    Ready,
    Shutdown,
    Text,
    Token,
    Tokenize,
    Tokens,
)

log = logging.getLogger(__name__)

RunnerEvent = Token | Done
STDERR_TAIL = 4000
_FAULTS = frozenset({signal.SIGSEGV, signal.SIGILL, signal.SIGBUS})
"""Signals a runner dies of when a compute kernel faults."""


class RunnerError(RequestError):
    """A runner could not serve a request (HTTP 500 unless a subclass says otherwise)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(status, message)


class RunnerLoadError(RunnerError):
    """The runner failed to load the model: it exited, reported an error or timed out.

    ``signal`` is the signal that killed the process, if one did.
    """

    def __init__(self, message: str, signal: int | None = None) -> None:
        super().__init__(message)
        self.signal = signal


class RunnerCrashedError(RunnerError):
    """The runner process died; every request it was serving fails with this. ``signal`` is the
    signal that killed it, if one did."""

    def __init__(self, message: str, signal: int | None = None) -> None:
        super().__init__(message)
        self.signal = signal


class RunnerRequestError(RunnerError):
    """The runner refused or failed one request; ``kind`` ``invalid`` (HTTP 400) blames the input."""

    def __init__(self, message: str, kind: str = "internal") -> None:
        super().__init__(message, 400 if kind == "invalid" else 500)
        self.kind = kind


class _Connection(asyncio.Protocol):
    """The server's end of a runner's socket: decodes the bytes the event loop hands it into
    frames, queues each for the request it belongs to (``pending``, keyed by request id, ``None``
    for the load) and wakes that request's waiter."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pending: dict[int | None, deque[FromRunner]] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.malformed: str | None = None
        self._decoder = FrameDecoder(FromRunner)
        self._waiters: dict[int | None, asyncio.Future[None]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FrameError as exc:
            self.malformed = str(exc)
            assert self.transport is not None
            self.transport.abort()
            return
        pending, waiters = self.pending, self._waiters
        for frame in frames:
            key = getattr(frame, "id", None)
            queue = pending.get(key)
            if queue is None:
                if isinstance(frame, Error) and key is None:
                    log.error("runner %d: %s", self.pid, frame.message)
                continue
            queue.append(frame)
            waiter = waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, key: int | None) -> None:
        """Return once a frame for ``key`` has been queued or the connection has closed."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[key] = waiter
        try:
            await waiter
        finally:
            if self._waiters.get(key) is waiter:
                del self._waiters[key]


class RunnerProcess:
    """One runner subprocess serving one loaded model. Create it with :meth:`start`."""

    def __init__(self, process: anyio.abc.Process, workdir: str, config: Load) -> None:
        self._process = process
        self._workdir = workdir
        self._stderr_path = os.path.join(workdir, "stderr.log")
        self.config = config
        self._connection = _Connection(process.pid)
        self._encoder = FrameEncoder()
        self._failure: RunnerError | None = None
        self._closing = False
        self._next_id = 0
        self.ready: Ready | None = None
        self.load_duration = 0

    @classmethod
    async def start(
        cls,
        config: Load,
        *,
        load_timeout: float = 300.0,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> RunnerProcess:
        """Spawn ``python -m ollama_core.runner``, load ``config`` and wait for it to be ready.

        A runner that faults while loading with ``config.repack`` is started once more without
        it (the returned runner's ``config`` says so): llama.cpp's AMX kernels fault on some
        machines that report AMX, and repacked weights are only an optimisation.
        Raises :class:`RunnerLoadError` when the process exits during the load (with the end of its
        stderr), reports a load error, or is not ready within ``load_timeout`` seconds.
        """
        try:
            return await cls._spawn(config, load_timeout, env, python)
        except RunnerLoadError as exc:
            if not config.repack or exc.signal not in _FAULTS:
                raise
            log.warning("%s; loading without llama.cpp's repacked CPU weights (AMX)", exc.message)
            return await cls._spawn(msgspec.structs.replace(config, repack=False), load_timeout, env, python)

    @classmethod
    async def _spawn(
        cls, config: Load, load_timeout: float, env: Mapping[str, str] | None, python: str
    ) -> RunnerProcess:
        started = time.perf_counter_ns()
        workdir = tempfile.mkdtemp(prefix="ollama-runner-")
        if len(workdir) > 90:
            os.rmdir(workdir)
            workdir = tempfile.mkdtemp(prefix="ollama-runner-", dir="/tmp")
        socket_path = os.path.join(workdir, "runner.sock")
        runner: RunnerProcess | None = None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                listener.bind(socket_path)
                os.chmod(socket_path, 0o600)
                listener.listen(1)
                listener.setblocking(False)
                with open(os.path.join(workdir, "stderr.log"), "wb") as stderr:
                    process = await anyio.open_process(
                        [python, "-m", "ollama_core.runner", "--socket", socket_path],
                        stdin=subprocess.DEVNULL,
                        stdout=stderr,
                        stderr=stderr,
                        env=dict(env) if env is not None else None,
                        start_new_session=True,
                    )
                runner = cls(process, workdir, config)
                with anyio.fail_after(load_timeout):
                    await runner._connect(listener)
                    await runner._load()
            os.unlink(socket_path)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                if runner is not None:
                    await runner._kill()
                shutil.rmtree(workdir, ignore_errors=True)
            if isinstance(exc, TimeoutError):
                tail = runner._stderr_tail() if runner is not None else ""
                raise RunnerLoadError(_join(f"timed out after {load_timeout:g}s loading {config.model_path}", tail)) from None
            if isinstance(exc, RunnerCrashedError):
                raise RunnerLoadError(f"error loading model {config.model_path}: {exc.message}", exc.signal) from None
            if isinstance(exc, OSError):
                raise RunnerLoadError(f"unable to start a runner for {config.model_path}: {exc}") from exc
            raise
        runner.load_duration = time.perf_counter_ns() - started
        log.info("runner %d ready for %s in %.2fs", runner.pid, config.model_path, runner.load_duration / 1e9)
        return runner

    async def _connect(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        accepted: list[socket.socket] = []

        async def accept() -> None:
            accepted.append((await loop.sock_accept(listener))[0])
            group.cancel_scope.cancel()

        async def watch() -> None:
            await self._process.wait()
            group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(accept)
            group.start_soon(watch)
        if not accepted:
            raise RunnerCrashedError(_join(self._describe_exit(), self._stderr_tail()), self._exit_signal())
        await loop.connect_accepted_socket(lambda: self._connection, accepted[0])

    async def _load(self) -> None:
        self._connection.pending[None] = deque()
        try:
            await self._send(self.config)
            frame = await self._receive(None)
        finally:
            self._connection.pending.pop(None, None)
        if isinstance(frame, Error):
            with anyio.move_on_after(5):
                await self._process.wait()
            raise RunnerLoadError(_join(frame.message, self._stderr_tail()))
        if not isinstance(frame, Ready):
            raise RunnerLoadError(f"unexpected answer from the runner: {type(frame).__name__}")
        self.ready = frame

    @property
    def pid(self) -> int:
        """The process id of the runner."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), or ``None`` while it runs."""
        return self._process.returncode

    @property
    def alive(self) -> bool:
        """Whether the runner runs and can take requests."""
        return self._failure is None and not self._closing and self._process.returncode is None

    async def generate(self, request: Generate) -> AsyncIterator[RunnerEvent]:
        """Stream :class:`Token` pieces and then one :class:`Done`.

        Leaving early (``aclose()``, cancellation, an exception in the consumer) cancels the
        request in the runner so its slot frees at once; use ``contextlib.aclosing`` to make
        that happen promptly. Raises :class:`RunnerRequestError` or :class:`RunnerCrashedError`.
        """
        request_id = self._open()
        finished = False
        try:
            await self._send(msgspec.structs.replace(request, id=request_id))
            while True:
                frame = await self._receive(request_id)
                if isinstance(frame, Token):
                    yield frame
                elif isinstance(frame, Done):
                    finished = True
                    yield frame
                    return
                elif isinstance(frame, Error):
                    finished = True
                    raise RunnerRequestError(frame.message, frame.kind)
        finally:
            self._connection.pending.pop(request_id, None)
            if not finished and self._failure is None and not self._closing:
                with anyio.CancelScope(shield=True), contextlib.suppress(RunnerError):
                    await self._send(Cancel(request_id))

    async def embed(self, request: Embed) -> Embeddings:
        """Pooled, unnormalised embeddings of every input of ``request``."""
        answer = await self._call(request)
        if not isinstance(answer, Embeddings):
            raise RunnerError(f"unexpected answer from the runner: {type(answer).__name__}")
        return answer

    async def inspect(self, request: Inspect) -> Inspection:
        """One checked forward pass: the final output and the named graph tensors."""
        answer = await self._call(request)
        if not isinstance(answer, Inspection):
            raise RunnerError(f"unexpected answer from the runner: {type(answer).__name__}")
        return answer

    async def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of ``text``."""
        answer = await self._call(Tokenize(text=text, add_special=add_special, parse_special=parse_special))
        if not isinstance(answer, Tokens):
            raise RunnerError(f"unexpected answer from the runner: {type(answer).__name__}")
        return answer.tokens

    async def detokenize(self, tokens: list[int], *, remove_special: bool = False, unparse_special: bool = True) -> str:
        """Text of ``tokens``."""
        answer = await self._call(Detokenize(tokens=tokens, remove_special=remove_special, unparse_special=unparse_special))
        if not isinstance(answer, Text):
            raise RunnerError(f"unexpected answer from the runner: {type(answer).__name__}")
        return answer.text

    async def close(self, timeout: float = 10.0) -> None:
        """Ask the runner to exit, then terminate and finally kill it; removes its private directory."""
        if self._closing:
            return
        self._closing = True
        with anyio.CancelScope(shield=True):
            if self._failure is None and self._process.returncode is None:
                with anyio.move_on_after(2), contextlib.suppress(RunnerError):
                    await self._send(Shutdown())
            with anyio.move_on_after(timeout):
                await self._process.wait()
            await self._kill()
            shutil.rmtree(self._workdir, ignore_errors=True)
        if self._failure is None:
            self._failure = RunnerError("the runner was stopped")

    async def _kill(self) -> None:
        process = self._process
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        if self._connection.transport is not None:
            self._connection.transport.abort()

    def _open(self) -> int:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise RunnerError("the runner was stopped")
        self._next_id += 1
        self._connection.pending[self._next_id] = deque()
        return self._next_id

    async def _call(self, request: Embed | Tokenize | Detokenize | Inspect) -> FromRunner:
        request_id = self._open()
        try:
            await self._send(msgspec.structs.replace(request, id=request_id))
            answer = await self._receive(request_id)
        finally:
            self._connection.pending.pop(request_id, None)
        if isinstance(answer, Error):
            raise RunnerRequestError(answer.message, answer.kind)
        return answer

    async def _send(self, frame: msgspec.Struct) -> None:
        transport = self._connection.transport
        if self._failure is None and (transport is None or transport.is_closing()):
            await self._lost()
        if self._failure is not None:
            raise self._failure
        assert transport is not None
        transport.write(self._encoder.encode(frame))

    async def _receive(self, request_id: int | None) -> FromRunner:
        connection = self._connection
        frames = connection.pending[request_id]
        while not frames:
            if self._failure is not None:
                raise self._failure
            if connection.closed:
                await self._lost()
            else:
                await connection.wait(request_id)
        return frames.popleft()

    async def _lost(self) -> None:
        """The connection is gone: record why, so that every waiting request fails with it. A
        runner that sent a malformed frame is killed."""
        if self._failure is not None:
            return
        if self._closing:
            self._failure = RunnerError("the runner was stopped")
            return
        malformed = self._connection.malformed
        with anyio.CancelScope(shield=True):
            if malformed is not None:
                await self._kill()
            with anyio.move_on_after(5):
                await self._process.wait()
        if self._failure is not None:
            return
        if malformed is not None:
            message = f"the runner process {self.pid} sent a malformed frame: {malformed}"
        else:
            message = _join(self._describe_exit(), self._stderr_tail())
        self._failure = RunnerCrashedError(message, self._exit_signal())
        log.error("%s", message)

    def _exit_signal(self) -> int | None:
        code = self._process.returncode
        return -code if code is not None and code < 0 else None

    def _describe_exit(self) -> str:
        code = self._process.returncode
        if code is None:
            return f"the runner process {self.pid} closed its connection"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"the runner process {self.pid} was killed by signal {name}"
        return f"the runner process {self.pid} exited with status {code}"

    def _stderr_tail(self) -> str:
        try:
            with open(self._stderr_path, "rb") as err:
                err.seek(0, os.SEEK_END)
                err.seek(max(0, err.tell() - STDERR_TAIL))
                return err.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""


def _join(message: str, tail: str) -> str:
    return f"{message}: {tail}" if tail else message
