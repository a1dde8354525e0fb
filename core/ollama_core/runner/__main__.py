"""Runner process entry point: ``python -m ollama_core.runner --socket PATH``.

The server listens on a unix socket at PATH, inside a directory only it can enter, and starts
this process, which connects to it. The first frame must be :class:`Load`; the runner answers
:class:`Ready` (or :class:`Error` and exits with status 1) and then serves frames until
:class:`Shutdown` or until the server's end of the socket closes. A reader thread turns
incoming bytes into frames for the engine, which runs on the main thread.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import queue
import socket
import sys
import threading

from ollama_core.runner.protocol import Error, FrameDecoder, FrameEncoder, FrameError, Load, Shutdown, ToRunner

log = logging.getLogger(__name__)

GGML_LOG_WARN = 3
GGML_LOG_CONT = 5

_llama_log_callback: object = None


def _install_llama_logging(verbose: bool) -> None:
    """Send llama.cpp's warnings and errors (everything when ``verbose``) to stderr."""
    global _llama_log_callback
    import llama_cpp

    state = {"shown": False}

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        show = state["shown"] if level == GGML_LOG_CONT else verbose or level >= GGML_LOG_WARN
        state["shown"] = show
        if show and text:
            sys.stderr.write(text.decode("utf-8", "replace"))

    _llama_log_callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def _install_mtmd_logging() -> None:
    """Route the multimodal library's log through the same filter as llama.cpp's."""
    from llama_cpp import mtmd_cpp

    if _llama_log_callback is not None:
        mtmd_cpp.mtmd_helper_log_set(_llama_log_callback, ctypes.c_void_p(0))


def _read_frames(sock: socket.socket, inbox: queue.SimpleQueue[ToRunner]) -> None:
    """Feed frames from the server into ``inbox``; a closed or broken socket becomes a Shutdown."""
    decoder = FrameDecoder(ToRunner)
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            for frame in decoder.feed(data):
                inbox.put(frame)
    except (OSError, FrameError) as exc:
        log.warning("connection to the server failed: %s", exc)
    inbox.put(Shutdown())


def serve(socket_path: str) -> int:
    """Connect to the server at ``socket_path``, load the model it names and serve it; the exit status."""
    from ollama_core.runner.engine import Engine, LoadError

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    encoder = FrameEncoder()
    inbox: queue.SimpleQueue[ToRunner] = queue.SimpleQueue()
    threading.Thread(target=_read_frames, args=(sock, inbox), name="runner-reader", daemon=True).start()
    first = inbox.get()
    if not isinstance(first, Load):
        if not isinstance(first, Shutdown):
            sock.sendall(encoder.encode(Error(id=None, message="the first frame must be Load", kind="invalid")))
        return 1
    if first.projector_path:
        _install_mtmd_logging()
    try:
        engine = Engine(first)
    except LoadError as exc:
        sock.sendall(encoder.encode(Error(id=None, message=str(exc), kind="internal")))
        return 1
    try:
        sock.sendall(encoder.encode(engine.ready))
        engine.run(inbox, sock.sendall)
    except OSError as exc:
        log.warning("lost the server: %s", exc)
    finally:
        engine.close()
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, set up logging and serve."""
    parser = argparse.ArgumentParser(prog="python -m ollama_core.runner", description="ollama-core model runner")
    parser.add_argument("--socket", required=True, help="unix socket the server listens on")
    args = parser.parse_args(argv)
    verbose = os.environ.get("OLLAMA_DEBUG", "").strip().lower() not in ("", "0", "false")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s runner[%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _install_llama_logging(verbose)
    return serve(args.socket)


if __name__ == "__main__":
    sys.exit(main())
