"""Fetch and build the servers compared against, in a cache directory outside the checkout.

``llama-server`` is built from the llama.cpp sources vendored in the llama-cpp-python sdist (the same
llama.cpp this project runs on); llama-cpp-python's own server gets a separate venv with its
``[server]`` extras, installed from the wheel ``scripts/install-dev.sh`` already built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
REQUIREMENT = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
)


def cache_dir() -> Path:
    """Where built tools live: ``$OLLAMA_BENCH_CACHE``, default ``~/.cache/ollama-core/bench``."""
    path = Path(os.environ.get("OLLAMA_BENCH_CACHE") or Path.home() / ".cache/ollama-core/bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


def wheel_dir() -> Path:
    """The wheel cache ``scripts/install-dev.sh`` fills (``$OLLAMA_WHEEL_CACHE``)."""
    return Path(os.environ.get("OLLAMA_WHEEL_CACHE") or Path.home() / ".cache/ollama-core/wheels")


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    """Run a build step, appending its output to ``log``; raise with the log's tail on failure."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        code = subprocess.call(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if code:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{cmd[0]} failed (exit {code}); see {log}:\n" + "\n".join(tail))


def sdist(cache: Path) -> Path:
    """The llama-cpp-python source archive, downloaded with ``pip download`` when missing."""
    dest = cache / "sdist"
    name = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if not (dest / name).is_file():
        dest.mkdir(exist_ok=True)
        print(f"downloading the {REQUIREMENT} sdist", file=sys.stderr)
        _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--no-binary", ":all:", REQUIREMENT, "-d", str(dest)],
            cache / "sdist.log",
        )
    return dest / name


def llama_server(cache: Path | None = None) -> Path:
    """Path of ``llama-server``, configured and built (``-j2``, that target only) when missing."""
    cache = cache or cache_dir()
    binary = cache / "llama.cpp-build/bin/llama-server"
    if binary.is_file():
        return binary
    src = cache / "llama.cpp"
    if not (src / "CMakeLists.txt").is_file():
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
        staging = cache / "llama.cpp.partial"
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(sdist(cache)) as tar:
            members = []
            for member in tar.getmembers():
                if member.name.startswith(prefix) and member.name != prefix:
                    member.name = member.name[len(prefix):]
                    members.append(member)
            tar.extractall(staging, members=members, filter="data")
        shutil.rmtree(src, ignore_errors=True)
        staging.rename(src)
    build = cache / "llama.cpp-build"
    log = cache / "llama-server-build.log"
    log.unlink(missing_ok=True)
    print(f"building llama-server (several minutes, once; log: {log})", file=sys.stderr)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(["cmake", "-S", str(src), "-B", str(build), *generator, *CMAKE_FLAGS], log)
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j2"], log)
    return binary


def llama_cpp_python_server(cache: Path | None = None) -> Path:
    """Python of a venv with ``llama-cpp-python[server]``, created and filled when missing."""
    cache = cache or cache_dir()
    env = cache / "llama-cpp-python-venv"
    python = env / "bin/python"
    marker = env / ".complete"
    if marker.is_file():
        return python
    log = cache / "llama-cpp-python-venv.log"
    log.unlink(missing_ok=True)
    print(f"creating a venv with {REQUIREMENT}[server] (log: {log})", file=sys.stderr)
    shutil.rmtree(env, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(env)
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--find-links", str(wheel_dir()), f"llama-cpp-python[server]=={LLAMA_CPP_PYTHON_VERSION}"],
        log,
    )
    marker.touch()
    return python
