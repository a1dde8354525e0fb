"""Push to and pull from a real ``docker-registry``: round trip, resume, sharing, progress lines."""

from __future__ import annotations

import filecmp
import threading
from pathlib import Path

import msgspec
import pytest

from ollama_core.digests import digest_hex
from ollama_core.errors import RequestError
from ollama_core.names import ModelName
from ollama_core.progress import Progress
from ollama_core.registry import pull_model, push_model
from ollama_core.registry.download import PartState
from ollama_core.store import Store

from .conftest import GGUF, Pushed, Recorder, fast_policy, put_smol
from .servers import FakeRegistry, Proxy


def short(digest: str) -> str:
    return digest_hex(digest)[:12]


def blob_names(store: Store) -> set[str]:
    blobs = store.root / "blobs"
    return {p.name for p in blobs.iterdir()} if blobs.exists() else set()


def registry_port(host: str) -> int:
    return int(host.rsplit(":", 1)[1])


def model_digest(store: Store, name: ModelName) -> str:
    return store.read_manifest(name).manifest.layers[0].digest


def test_push_then_pull_round_trip(docker_registry: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    name = ModelName.parse(f"{docker_registry}/library/roundtrip:latest")
    raw = put_smol(store, name)
    manifest = store.read_manifest(name).manifest
    order = [layer.digest for layer in (*manifest.layers, manifest.config)]

    pushed = Recorder()
    push_model(store, name, insecure=True, progress=pushed, policy=fast_policy())
    assert pushed.statuses == [
        "retrieving manifest",
        *(f"pushing {short(d)}" for d in order),
        "pushing manifest",
        "success",
    ]
    model = [p for p in pushed.lines if p.digest == order[0]]
    assert model[-1].completed == model[-1].total == GGUF.stat().st_size
    assert any(0 < p.completed < p.total for p in model), "a large blob reports progress while it uploads"

    store.delete(name)
    assert blob_names(store) == set()

    pulled = Recorder()
    pull_model(store, name, insecure=True, progress=pulled, policy=fast_policy())
    assert pulled.statuses == [
        "pulling manifest",
        *(f"pulling {short(d)}" for d in order),
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    for digest in order:
        last = [p for p in pulled.lines if p.digest == digest][-1]
        assert last.completed == last.total
    assert store.read_manifest(name).raw == raw
    assert filecmp.cmp(store.blob_path(order[0]), GGUF, shallow=False)
    assert all(store.verify_blob(d) for d in order)
    assert blob_names(store) == {store.blob_path(d).name for d in order}

    again = Recorder()
    pull_model(store, name, insecure=True, progress=again, policy=fast_policy())
    blob_lines = [p for p in again.lines if p.digest]
    assert [p.digest for p in blob_lines] == order, "present blobs are reported exactly once"
    assert all(p.completed == p.total > 0 for p in blob_lines)


def test_push_skips_blobs_the_registry_has(pushed: Pushed, docker_registry: str) -> None:
    progress = Recorder()
    push_model(pushed.store, pushed.name(docker_registry), insecure=True, progress=progress, policy=fast_policy())
    blob_lines = [p for p in progress.lines if p.digest]
    assert len(blob_lines) == 3
    assert all(p.completed == p.total for p in blob_lines)
    assert progress.statuses[-2:] == ["pushing manifest", "success"]


def test_pull_unknown_model(docker_registry: str, store: Store) -> None:
    progress = Recorder()
    name = ModelName.parse(f"{docker_registry}/library/no-such-model:latest")
    with pytest.raises(RequestError) as info:
        pull_model(store, name, insecure=True, progress=progress, policy=fast_policy())
    assert info.value.message == "pull model manifest: file does not exist"
    assert info.value.status == 404
    assert progress.statuses == ["pulling manifest"]
    assert store.list_models() == []


def test_push_unknown_model(docker_registry: str, store: Store) -> None:
    progress = Recorder()
    name = ModelName.parse(f"{docker_registry}/library/absent:latest")
    with pytest.raises(RequestError) as info:
        push_model(store, name, insecure=True, progress=progress, policy=fast_policy())
    assert info.value.status == 404
    assert progress.statuses == ["retrieving manifest", "couldn't retrieve manifest"]


def test_http_scheme_requires_insecure(store: Store) -> None:
    name = ModelName.parse("http://127.0.0.1:9/library/m:latest")
    for operation in (pull_model, push_model):
        with pytest.raises(RequestError, match="insecure protocol http"):
            operation(store, name, insecure=False, progress=Recorder(), policy=fast_policy())


def test_interrupted_pull_resumes_where_it_stopped(pushed: Pushed, docker_registry: str, store: Store) -> None:
    size = GGUF.stat().st_size
    cutter = Proxy(registry_port(docker_registry), cut_after=40 << 20)
    try:
        with pytest.raises(RequestError) as info:
            pull_model(store, pushed.name(cutter.host), insecure=True, progress=Recorder(), policy=fast_policy())
    finally:
        cutter.close()
    assert info.value.status in (502, 504)
    assert store.list_models() == []

    digest = pushed.store.read_manifest(pushed.name(docker_registry)).manifest.layers[0].digest
    partial = store.blob_path(digest).with_name(store.blob_path(digest).name + "-partial")
    states = sorted(partial.parent.glob(partial.name + "-*"))
    assert partial.stat().st_size == size and len(states) > 1
    kept = sum(msgspec.json.decode(p.read_bytes(), type=PartState).Completed for p in states)
    assert 0 < kept < size

    counter = Proxy(registry_port(docker_registry))
    progress = Recorder()
    try:
        pull_model(store, pushed.name(counter.host), insecure=True, progress=progress, policy=fast_policy())
    finally:
        counter.close()
    first = next(p for p in progress.lines if p.digest == digest)
    assert first.completed == kept, "the resumed pull starts from the saved progress"
    assert size - kept <= counter.downstream < size - kept + (256 << 10), "only the missing bytes travel again"
    assert filecmp.cmp(store.blob_path(digest), GGUF, shallow=False)
    assert not partial.exists() and not list(partial.parent.glob(partial.name + "-*"))
    assert store.read_manifest(pushed.name(counter.host)).raw == pushed.manifest


def test_aborted_pull_keeps_its_progress(pushed: Pushed, docker_registry: str, store: Store) -> None:
    name = pushed.name(docker_registry)
    digest = pushed.store.read_manifest(name).manifest.layers[0].digest

    class Abort(Exception):
        pass

    def impatient(progress: Progress) -> None:
        if progress.digest == digest and progress.completed > 0:
            raise Abort()

    with pytest.raises(Abort):
        pull_model(store, name, insecure=True, progress=impatient, policy=fast_policy())
    assert store.list_models() == []
    assert not store.has_blob(digest)

    progress = Recorder()
    pull_model(store, name, insecure=True, progress=progress, policy=fast_policy())
    assert next(p for p in progress.lines if p.digest == digest).completed > 0
    assert store.verify_blob(digest)


def test_concurrent_pulls_download_once(pushed: Pushed, docker_registry: str, store: Store) -> None:
    counter = Proxy(registry_port(docker_registry))
    name = pushed.name(counter.host)
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            pull_model(store, name, insecure=True, progress=Recorder(), policy=fast_policy())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    counter.close()
    assert not errors
    assert counter.downstream < GGUF.stat().st_size * 1.2
    assert store.read_manifest(name).raw == pushed.manifest
    assert store.verify_blob(model_digest(store, name))


def test_pull_replacing_layers_removes_unused_ones(fake_registry: FakeRegistry, store: Store) -> None:
    name = ModelName.parse(f"{fake_registry.host}/library/tiny:latest")
    first = fake_registry.add_small_model(params=b'{"seed":1}')
    pull_model(store, name, insecure=True, progress=Recorder(), policy=fast_policy())
    old = msgspec.json.decode(first)["layers"][0]["digest"]
    assert store.has_blob(old)

    fake_registry.add_small_model(params=b'{"seed":2}')
    progress = Recorder()
    pull_model(store, name, insecure=True, progress=progress, policy=fast_policy())
    assert progress.statuses[-3:] == ["writing manifest", "removing unused layers", "success"]
    assert not store.has_blob(old)

    kept = Recorder()
    pull_model(store, name, insecure=True, progress=kept, policy=fast_policy(), prune=False)
    assert "removing unused layers" not in kept.statuses
