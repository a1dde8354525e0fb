"""Registry test fixtures: a real ``docker-registry`` on loopback, a fake registry, stores, a fast policy."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ollama_core.names import ModelName
from ollama_core.progress import Progress
from ollama_core.registry import RegistryPolicy, push_model
from ollama_core.store import MEDIA_TYPE_CONFIG, MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, Layer, Manifest, Store

from .servers import FakeRegistry

REGISTRY_BINARY = "/usr/bin/docker-registry"
GGUF = Path(__file__).resolve().parents[2] / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fast_policy(**overrides: object) -> RegistryPolicy:
    """Loopback allowed; short timeouts, one retry and a strict minimum speed so failures come fast."""
    settings: dict[str, object] = {
        "allow_loopback": True,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "body_deadline": 3.0,
        "min_speed": 64 << 10,
        "speed_window": 1.0,
        "retries": 1,
        "retry_backoff": 0.05,
    }
    settings.update(overrides)
    return RegistryPolicy(**settings)  # type: ignore[arg-type]


class Recorder:
    """A progress sink that keeps every line."""

    def __init__(self) -> None:
        self.lines: list[Progress] = []

    def __call__(self, progress: Progress) -> None:
        self.lines.append(progress)

    @property
    def statuses(self) -> list[str]:
        """Statuses in order, consecutive repeats collapsed."""
        result: list[str] = []
        for line in self.lines:
            if not result or result[-1] != line.status:
                result.append(line.status)
        return result


def put_smol(store: Store, name: ModelName, params: bytes = b'{"temperature":0.6}') -> bytes:
    """Store SmolLM2 (GGUF layer, params layer, config) as ``name``; returns the manifest bytes."""
    model = store.put_file(GGUF)
    options = store.put_bytes(params)
    config = store.put_bytes(b'{"model_format":"gguf","model_family":"llama","architecture":"amd64","os":"linux"}')
    manifest = Manifest(
        config=Layer(mediaType=MEDIA_TYPE_CONFIG, digest=config.digest, size=config.size),
        layers=[
            Layer(mediaType=MEDIA_TYPE_MODEL, digest=model.digest, size=model.size),
            Layer(mediaType=MEDIA_TYPE_PARAMS, digest=options.digest, size=options.size),
        ],
    )
    store.write_manifest(name, manifest)
    return store.read_manifest(name).raw


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Our own ``docker-registry`` process (not the packaged service) on a free loopback port; yields ``host:port``."""
    binary = shutil.which("docker-registry") or (REGISTRY_BINARY if os.access(REGISTRY_BINARY, os.X_OK) else None)
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    if not GGUF.is_file():
        pytest.skip(f"model file {GGUF} is missing (scripts/fetch-default-model.sh)")
    root = tmp_path_factory.mktemp("docker-registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(root=root / "data", port=port))
    with open(root / "registry.log", "wb") as log_file:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(root / 'registry.log').read_text()}")
            try:
                if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start within 15 s")
            time.sleep(0.05)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Pushed:
    """SmolLM2 pushed to the real registry as ``repository:latest``."""

    repository: str
    manifest: bytes
    store: Store

    def name(self, host: str) -> ModelName:
        """The model's name on ``host`` (the registry itself or a proxy in front of it)."""
        return ModelName.parse(f"{host}/{self.repository}:latest")


@pytest.fixture(scope="session")
def pushed(docker_registry: str, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    store = Store(tmp_path_factory.mktemp("pushed") / "models")
    name = ModelName.parse(f"{docker_registry}/library/smol:latest")
    raw = put_smol(store, name)
    push_model(store, name, insecure=True, progress=Recorder(), policy=fast_policy())
    return Pushed("library/smol", raw, store)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty store at ``tmp_path/models``; nothing else may appear under ``tmp_path``."""
    return Store(tmp_path / "models")


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    registry = FakeRegistry().start()
    yield registry
    registry.stop()
