"""The model store on real files: digests, blobs, manifests, Ollama's layout, garbage collection, crash safety."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollama_core.digests import InvalidDigestError, blob_filename, parse_digest, sha256_digest
from ollama_core.names import ModelName
from ollama_core.store import (
    MAX_MANIFEST_SIZE,
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_DRAFT,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    BlobNotFoundError,
    BlobTooLargeError,
    DigestMismatchError,
    InvalidLayerError,
    InvalidManifestError,
    Layer,
    Manifest,
    ModelConfig,
    ModelNotFoundError,
    RootFS,
    Store,
    load_model,
)

HEX = hashlib.sha256(b"x").hexdigest()
TWO_HOURS_AGO = time.time() - 7200


def go_json(value: Any) -> bytes:
    """JSON as Go's ``json.Marshal`` writes it for these documents (compact, key order kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def hand_blob(root: Path, data: bytes) -> dict[str, Any]:
    """Write a blob file by hand, as Ollama names it; returns its manifest layer fields."""
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def hand_manifest(root: Path, parts: tuple[str, str, str, str], manifest: dict[str, Any]) -> bytes:
    """Write a manifest by hand as Ollama's ``json.Encoder`` does (trailing newline); returns the bytes."""
    path = root.joinpath("manifests", *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = go_json(manifest) + b"\n"
    path.write_bytes(raw)
    return raw


def manifest_doc(config: dict[str, Any], layers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, **config},
        "layers": layers,
    }


def simple_model(
    store: Store, name: str, *, weights: bytes = b"GGUF weights", template: str = "{{ .Prompt }}"
) -> Manifest:
    """Create a small model through the store API."""
    model = store.put_bytes(weights)
    tmpl = store.put_bytes(template.encode())
    config = store.put_bytes(go_json({"model_format": "gguf", "model_family": "llama", "name": name}))
    manifest = Manifest(
        config=Layer(MEDIA_TYPE_CONFIG, config.digest, config.size),
        layers=[Layer(MEDIA_TYPE_MODEL, model.digest, model.size), Layer(MEDIA_TYPE_TEMPLATE, tmpl.digest, tmpl.size)],
    )
    store.write_manifest(ModelName.parse(name), manifest)
    return manifest


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


def blob_names(store: Store) -> set[str]:
    return {p.name for p in store.layout.blobs_dir.iterdir()} if store.layout.blobs_dir.exists() else set()


def age(path: Path, seconds: float = 7200) -> None:
    """Set ``path``'s mtime ``seconds`` into the past."""
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)


# ---- digests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [f"sha256:{HEX}", f"sha256-{HEX}"])
def test_digest_forms_are_accepted_and_canonicalised(text: str) -> None:
    assert parse_digest(text) == f"sha256:{HEX}"
    assert blob_filename(text) == f"sha256-{HEX}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256:",
        "sha256-",
        HEX,
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}0",
        f"sha256:{HEX.upper()}",
        f"sha256:{HEX[:10].upper()}{HEX[10:]}",
        f"SHA256:{HEX}",
        f"sha512:{HEX}{HEX}",
        f"sha256_{HEX}",
        f"sha256::{HEX}",
        f"sha256:{HEX}\n",
        f" sha256:{HEX}",
        f"sha256: {HEX[1:]}",
        "sha256:" + "g" * 64,
        "sha256:../../../../etc/passwd",
        "sha256-../../../../etc/passwd",
        "../../../../etc/passwd",
        f"sha256:{HEX[:30]}/../{HEX[35:]}",
        f"sha256:{HEX}/..",
        f"sha256:{HEX}/../../x",
        f"sha256-{HEX}-partial",
        "sha256:..%2F..%2Fetc%2Fpasswd",
        f"sha256:{HEX[:63]}\x00",
    ],
)
def test_invalid_digests_are_refused(text: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidDigestError) as info:
        parse_digest(text)
    assert str(info.value) == "invalid digest format"
    with pytest.raises(InvalidDigestError):
        blob_filename(text)
    store = Store(tmp_path)
    with pytest.raises(InvalidDigestError):
        store.blob_path(text)
    with pytest.raises(InvalidDigestError):
        store.has_blob(text)
    with pytest.raises(InvalidDigestError):
        store.blob_writer(text)
    assert files_under(tmp_path) == set()


@given(st.text(max_size=80))
def test_any_text_is_a_canonical_digest_or_refused(text: str) -> None:
    try:
        digest = parse_digest(text)
    except InvalidDigestError:
        return
    assert digest.startswith("sha256:") and len(digest) == 71
    assert set(digest[7:]) <= set("0123456789abcdef")
    assert blob_filename(digest) == "sha256-" + digest[7:]


def test_sha256_digest_of_bytes() -> None:
    assert sha256_digest(b"x") == f"sha256:{HEX}"


# ---- blobs ---------------------------------------------------------------------------------------


def test_store_creates_nothing_until_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    assert store.list_models() == []
    assert not store.has_blob(f"sha256:{HEX}")
    assert store.prune() == 0
    assert not (tmp_path / "models").exists()


def test_from_env_reads_ollama_models_and_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Store.from_env({"OLLAMA_MODELS": "~/elsewhere"}).root == tmp_path / "elsewhere"
    assert Store.from_env({}).root == tmp_path / ".ollama" / "models"
    assert Store.from_env({"OLLAMA_MODELS": ""}).root == tmp_path / ".ollama" / "models"
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "env"))
    assert Store.from_env().root == tmp_path / "env"


def test_blob_writer_commits_under_the_digest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    data = os.urandom(3 << 20)
    digest = sha256_digest(data)
    with store.blob_writer(digest, max_size=len(data)) as writer:
        for i in range(0, len(data), 65536):
            writer.write(data[i : i + 65536])
        info = writer.commit()
    assert (info.digest, info.size, info.created) == (digest, len(data), True)
    path = store.blob_path(digest)
    assert path == tmp_path / "blobs" / f"sha256-{digest[7:]}"
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o644
    assert blob_names(store) == {path.name}
    assert store.has_blob(digest) and store.has_blob(f"sha256-{digest[7:]}")
    assert store.verify_blob(digest)


def test_writing_an_existing_blob_reports_not_created(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = store.put_bytes(b"same")
    with store.blob_writer() as writer:
        writer.write(b"same")
        second = writer.commit()
    assert first.created and not second.created
    assert first.digest == second.digest == sha256_digest(b"same")
    assert store.put_bytes(b"same").created is False
    assert blob_names(store) == {blob_filename(first.digest)}


def test_digest_mismatch_leaves_the_store_unchanged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_bytes(b"existing")
    before = files_under(tmp_path)
    expected = sha256_digest(b"announced")
    with pytest.raises(DigestMismatchError) as info, store.blob_writer(expected) as writer:
        writer.write(b"actual")
        writer.commit()
    assert str(info.value) == f'digest mismatch, expected "{expected}", got "{sha256_digest(b"actual")}"'
    assert info.value.expected == expected
    assert files_under(tmp_path) == before
    assert not store.has_blob(expected) and not store.has_blob(sha256_digest(b"actual"))


def test_blob_too_large_leaves_the_store_unchanged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_bytes(b"existing")
    before = files_under(tmp_path)
    with pytest.raises(BlobTooLargeError), store.blob_writer(max_size=10) as writer:
        writer.write(b"12345")
        writer.write(b"12345")
        writer.write(b"1")
    assert files_under(tmp_path) == before
    with store.blob_writer(max_size=10) as writer:
        writer.write(b"1234567890")
        assert writer.commit().size == 10


def test_aborted_writes_leave_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.blob_writer() as writer:
        writer.write(b"never committed")
    with pytest.raises(RuntimeError), store.blob_writer() as writer:
        writer.write(b"failing upload")
        raise RuntimeError("client went away")
    assert blob_names(store) == set()
    with pytest.raises(ValueError):
        writer.write(b"more")


def test_put_file_streams_a_copy(tmp_path: Path) -> None:
    source = tmp_path / "model.gguf"
    data = os.urandom((1 << 20) * 2 + 17)
    source.write_bytes(data)
    store = Store(tmp_path / "models")
    info = store.put_file(source)
    assert (info.digest, info.size, info.created) == (sha256_digest(data), len(data), True)
    assert store.blob_path(info.digest).read_bytes() == data
    assert source.read_bytes() == data
    assert store.put_file(source).created is False


def test_corrupt_blob_fails_verification(tmp_path: Path) -> None:
    store = Store(tmp_path)
    info = store.put_bytes(b"original content")
    store.blob_path(info.digest).write_bytes(b"tampered content")
    assert store.has_blob(info.digest)
    assert not store.verify_blob(info.digest)
    assert not store.verify_blob(sha256_digest(b"absent"))


def test_special_files_in_blobs_are_never_opened_for_reading(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = sha256_digest(b"fifo")
    (tmp_path / "blobs").mkdir()
    os.mkfifo(store.blob_path(digest))
    assert not store.has_blob(digest)
    assert not store.verify_blob(digest)
    with pytest.raises(OSError):
        store.read_text(digest)


def test_rewriting_a_truncated_blob_repairs_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    info = store.put_bytes(b"full content")
    store.blob_path(info.digest).write_bytes(b"full")
    with store.blob_writer(info.digest) as writer:
        writer.write(b"full content")
        writer.commit()
    assert store.verify_blob(info.digest)


def test_small_layer_reads_are_bounded(tmp_path: Path) -> None:
    store = Store(tmp_path)
    text = store.put_bytes("héllo".encode())
    assert store.read_text(text.digest) == "héllo"
    with pytest.raises(BlobTooLargeError):
        store.read_text(text.digest, max_size=3)
    js = store.put_bytes(b'{"a":[1,2]}')
    assert store.read_json(js.digest) == {"a": [1, 2]}
    with pytest.raises(InvalidLayerError):
        store.read_json(text.digest)
    with pytest.raises(BlobNotFoundError):
        store.read_text(sha256_digest(b"absent"))


# ---- a store written by Ollama itself -------------------------------------------------------------

LLAMA_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>"
)
MTIME_NS = 1_746_405_464_706_015_396


def build_ollama_store(root: Path) -> dict[str, Any]:
    """Lay out three models by hand exactly as Ollama writes them."""
    weights = hand_blob(root, b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 64)
    projector = hand_blob(root, b"GGUF projector")
    adapter = hand_blob(root, b"GGUF lora")
    draft = hand_blob(root, b"GGUF draft")
    template = hand_blob(root, LLAMA_TEMPLATE.encode())
    system = hand_blob(root, b"You are a helpful assistant.")
    params = hand_blob(root, go_json({"stop": ["<|eot_id|>", "<|end_of_text|>"], "temperature": 0.6, "num_ctx": 4096}))
    messages = hand_blob(root, go_json([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]))
    license_a = hand_blob(root, b"LLAMA 3.2 COMMUNITY LICENSE AGREEMENT")
    license_b = hand_blob(root, b"Acceptable Use Policy")
    layers = [
        {"mediaType": MEDIA_TYPE_MODEL, **weights, "from": "registry.ollama.ai/library/llama3.2:latest"},
        {"mediaType": MEDIA_TYPE_PROJECTOR, **projector},
        {"mediaType": MEDIA_TYPE_ADAPTER, **adapter},
        {"mediaType": MEDIA_TYPE_DRAFT, **draft},
        {"mediaType": MEDIA_TYPE_TEMPLATE, **template},
        {"mediaType": MEDIA_TYPE_SYSTEM, **system},
        {"mediaType": MEDIA_TYPE_PARAMS, **params},
        {"mediaType": MEDIA_TYPE_MESSAGES, **messages},
        {"mediaType": MEDIA_TYPE_LICENSE, **license_a},
        {"mediaType": MEDIA_TYPE_LICENSE, **license_b},
    ]
    config = hand_blob(
        root,
        go_json(
            {
                "model_format": "gguf",
                "model_family": "llama",
                "model_families": ["llama"],
                "model_type": "3.2B",
                "file_type": "Q4_K_M",
                "renderer": "llama3",
                "parser": "llama3",
                "capabilities": ["completion", "tools"],
                "context_length": 131072,
                "embedding_length": 3072,
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
            }
        ),
    )
    full = hand_manifest(root, ("registry.ollama.ai", "library", "llama3.2", "latest"), manifest_doc(config, layers))
    os.utime(root / "manifests/registry.ollama.ai/library/llama3.2/latest", ns=(MTIME_NS, MTIME_NS))

    prompt = hand_blob(root, b"### User: {{ .Prompt }}")
    old_config = hand_blob(
        root,
        go_json(
            {
                "model_format": "gguf",
                "model_family": "",
                "model_families": None,
                "model_type": "",
                "file_type": "",
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": None},
            }
        ),
    )
    legacy = hand_manifest(
        root,
        ("registry.ollama.ai", "MyUser", "Old-Model", "v0.1"),
        manifest_doc(
            old_config, [{"mediaType": MEDIA_TYPE_MODEL, **weights}, {"mediaType": MEDIA_TYPE_PROMPT, **prompt}]
        ),
    )
    stub_config = hand_blob(
        root, go_json({"model_format": "", "remote_host": "https://ollama.com:443", "remote_model": "gpt-oss:120b"})
    )
    stub_doc = manifest_doc(stub_config, [])
    stub = go_json({**stub_doc, "layers": None}) + b"\n"
    stub_path = root / "manifests/localhost:5000/ns/stub/cloud"
    stub_path.parent.mkdir(parents=True)
    stub_path.write_bytes(stub)
    return {
        "full": full,
        "legacy": legacy,
        "stub": stub,
        "weights": weights,
        "layers": layers,
        "config": config,
        "prompt": prompt,
        "old_config": old_config,
        "stub_config": stub_config,
    }


def test_reads_a_store_laid_out_as_ollama_writes_it(tmp_path: Path) -> None:
    root = tmp_path / "models"
    built = build_ollama_store(root)
    store = Store(root)

    listed = store.list_models()
    assert [s.name.display() for s in listed] == [
        "localhost:5000/ns/stub:cloud",
        "llama3.2:latest",
        "MyUser/Old-Model:v0.1",
    ]
    by_name = {s.name.display(): s for s in listed}

    llama = by_name["llama3.2:latest"]
    assert llama.raw == built["full"]
    assert llama.digest == hashlib.sha256(built["full"]).hexdigest()
    assert llama.size == built["config"]["size"] + sum(layer["size"] for layer in built["layers"])
    assert llama.modified_at == datetime(2025, 5, 5, 0, 37, 44, 706015, tzinfo=timezone.utc)
    assert llama.modified_at.utcoffset() is not None
    assert llama.manifest.layers[0].from_ == "registry.ollama.ai/library/llama3.2:latest"
    assert store.read_manifest(ModelName.parse("llama3.2")).raw == built["full"]

    model = load_model(store, ModelName.parse("llama3.2"))
    assert model.name == ModelName.parse("llama3.2")
    assert model.digest == llama.digest and model.size == llama.size and model.modified_at == llama.modified_at
    assert model.model_digest == built["weights"]["digest"]
    assert model.model_path == root / "blobs" / blob_filename(built["weights"]["digest"])
    assert model.model_path.read_bytes().startswith(b"GGUF")
    assert model.parent_model == "registry.ollama.ai/library/llama3.2:latest"
    assert [p.read_bytes() for p in model.projector_paths] == [b"GGUF projector"]
    assert [p.read_bytes() for p in model.adapter_paths] == [b"GGUF lora"]
    assert model.draft_path is not None and model.draft_path.read_bytes() == b"GGUF draft"
    assert model.template == LLAMA_TEMPLATE
    assert model.system == "You are a helpful assistant."
    assert model.parameters == {"stop": ["<|eot_id|>", "<|end_of_text|>"], "temperature": 0.6, "num_ctx": 4096}
    assert model.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert model.license == ["LLAMA 3.2 COMMUNITY LICENSE AGREEMENT", "Acceptable Use Policy"]
    assert len(model.layers) == 10
    assert model.config.model_format == "gguf" and model.config.model_families == ["llama"]
    assert model.config.model_type == "3.2B" and model.config.file_type == "Q4_K_M"
    assert model.config.renderer == "llama3" and model.config.parser == "llama3"
    assert model.config.capabilities == ["completion", "tools"]
    assert (model.config.context_length, model.config.embedding_length) == (131072, 3072)
    assert model.config.rootfs == RootFS(type="layers", diff_ids=[layer["digest"] for layer in built["layers"]])

    legacy = load_model(store, ModelName.parse("myuser/old-model:V0.1"))
    assert legacy.name.display() == "MyUser/Old-Model:v0.1"
    assert legacy.template == "### User: {{ .Prompt }}"
    assert legacy.system is None and legacy.parameters == {} and legacy.messages == [] and legacy.license == []
    assert legacy.parent_model == "" and legacy.projector_paths == [] and legacy.draft_path is None
    assert legacy.config == ModelConfig(
        model_format="gguf", architecture="amd64", os="linux", rootfs=RootFS(type="layers")
    )

    stub = load_model(store, ModelName.parse("localhost:5000/ns/stub:cloud"))
    assert stub.layers == [] and stub.model_path is None and stub.template is None
    assert stub.config.remote_model == "gpt-oss:120b"
    assert stub.digest == hashlib.sha256(built["stub"]).hexdigest()


def test_written_manifests_have_ollamas_shape(tmp_path: Path) -> None:
    store = Store(tmp_path)
    model = store.put_bytes(b"GGUF")
    config = store.put_bytes(b"{}")
    manifest = Manifest(
        config=Layer(MEDIA_TYPE_CONFIG, config.digest, config.size),
        layers=[
            Layer(MEDIA_TYPE_MODEL, model.digest, model.size, from_="llama3.2:latest"),
            Layer(MEDIA_TYPE_SYSTEM, config.digest, 0),
        ],
    )
    digest = store.write_manifest(ModelName.parse("m"), manifest)
    path = tmp_path / "manifests/registry.ollama.ai/library/m/latest"
    raw = path.read_bytes()
    assert digest == hashlib.sha256(raw).hexdigest()
    assert raw.endswith(b"}\n") and b"\n" not in raw[:-1]
    assert list(json.loads(raw)) == ["schemaVersion", "mediaType", "config", "layers"]
    assert json.loads(raw) == {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config.digest, "size": 2},
        "layers": [
            {"mediaType": MEDIA_TYPE_MODEL, "digest": model.digest, "size": 4, "from": "llama3.2:latest"},
            {"mediaType": MEDIA_TYPE_SYSTEM, "digest": config.digest, "size": 0},
        ],
    }
    assert path.stat().st_mode & 0o777 == 0o644
    assert not any(p.name.startswith(".tmp-") for p in path.parent.iterdir())


def test_manifest_bytes_are_stored_byte_for_byte(tmp_path: Path) -> None:
    store = Store(tmp_path)
    config = store.put_bytes(b"{}")
    raw = (
        b'{\n  "schemaVersion": 2,\n  "mediaType": "' + MEDIA_TYPE_MANIFEST.encode() + b'",\n'
        b'  "config": {"mediaType": "' + MEDIA_TYPE_CONFIG.encode() + b'", '
        b'"digest": "' + config.digest.encode() + b'", "size": 2},\n'
        b'  "layers": []\n}'
    )
    digest = store.write_manifest(ModelName.parse("reg.example/ns/m:t"), raw)
    stored = store.read_manifest(ModelName.parse("reg.example/ns/m:t"))
    assert stored.raw == raw and stored.digest == digest == hashlib.sha256(raw).hexdigest()


def test_write_manifest_refuses_missing_blobs(tmp_path: Path) -> None:
    store = Store(tmp_path)
    config = store.put_bytes(b"{}")
    missing = sha256_digest(b"not uploaded")
    manifest = Manifest(
        config=Layer(MEDIA_TYPE_CONFIG, config.digest, 2), layers=[Layer(MEDIA_TYPE_MODEL, missing, 12)]
    )
    with pytest.raises(BlobNotFoundError):
        store.write_manifest(ModelName.parse("m"), manifest)
    assert store.list_models() == []
    assert not (tmp_path / "manifests").exists() or files_under(tmp_path / "manifests") == set()


# ---- names on disk ---------------------------------------------------------------------------------


def test_resolve_matches_case_insensitively_and_keeps_the_stored_spelling(tmp_path: Path) -> None:
    store = Store(tmp_path)
    simple_model(store, "MyUser/Llama3.2:Latest")
    assert store.resolve(ModelName.parse("myuser/llama3.2")) == ModelName.parse("MyUser/Llama3.2:Latest")
    assert store.resolve(ModelName.parse("MYUSER/LLAMA3.2:LATEST")) == ModelName.parse("MyUser/Llama3.2:Latest")
    assert store.resolve(ModelName.parse("myuser/llama3.3")) is None
    assert store.resolve(ModelName.parse("example.com/myuser/llama3.2")) is None
    assert store.read_manifest(ModelName.parse("myuser/LLAMA3.2")).name.display() == "MyUser/Llama3.2:Latest"
    with pytest.raises(ModelNotFoundError) as info:
        store.read_manifest(ModelName.parse("other"))
    assert str(info.value) == "model 'other:latest' not found"


def test_writing_another_case_reuses_the_stored_spelling(tmp_path: Path) -> None:
    store = Store(tmp_path)
    simple_model(store, "MyUser/Llama3.2")
    simple_model(store, "myuser/LLAMA3.2", template="new template")
    simple_model(store, "MYUSER/other:v1")
    assert sorted(files_under(tmp_path / "manifests")) == [
        "registry.ollama.ai",
        "registry.ollama.ai/MyUser",
        "registry.ollama.ai/MyUser/Llama3.2",
        "registry.ollama.ai/MyUser/Llama3.2/latest",
        "registry.ollama.ai/MyUser/other",
        "registry.ollama.ai/MyUser/other/v1",
    ]
    assert load_model(store, ModelName.parse("myuser/llama3.2")).template == "new template"


def test_writing_replaces_manifests_that_differ_only_in_case(tmp_path: Path) -> None:
    root = tmp_path
    store = Store(root)
    manifest = simple_model(store, "model")
    raw = (root / "manifests/registry.ollama.ai/library/model/latest").read_bytes()
    twin = root / "manifests/registry.ollama.ai/library/MODEL/latest"
    twin.parent.mkdir(parents=True)
    twin.write_bytes(raw)
    assert len(store.list_models()) == 2
    store.write_manifest(ModelName.parse("model"), manifest)
    assert [s.name.display() for s in store.list_models()] == ["model:latest"]
    assert not twin.parent.exists()
    twin.parent.mkdir()
    twin.write_bytes(raw)
    store.write_manifest(ModelName.parse("Model"), manifest)
    assert len(store.list_models()) == 1


# ---- delete, copy, replace --------------------------------------------------------------------------


def test_delete_prunes_only_unshared_blobs_and_empty_dirs(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = simple_model(store, "team/first", weights=b"shared weights", template="first template")
    second = simple_model(store, "team/second", weights=b"shared weights", template="second template")
    unrelated = store.put_bytes(b"uploaded, not yet used")
    shared = first.layers[0].digest
    assert shared == second.layers[0].digest

    store.delete(ModelName.parse("TEAM/FIRST"))
    assert [s.name.display() for s in store.list_models()] == ["team/second:latest"]
    assert store.has_blob(shared)
    assert not store.has_blob(first.layers[1].digest) and not store.has_blob(first.config.digest)
    assert store.has_blob(second.layers[1].digest) and store.has_blob(second.config.digest)
    assert store.has_blob(unrelated.digest)
    assert not (tmp_path / "manifests/registry.ollama.ai/team/first").exists()

    store.delete(ModelName.parse("team/second"))
    assert store.list_models() == []
    assert blob_names(store) == {blob_filename(unrelated.digest)}
    assert files_under(tmp_path / "manifests") == set()
    with pytest.raises(ModelNotFoundError):
        store.delete(ModelName.parse("team/second"))


def test_copy_duplicates_only_the_manifest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    simple_model(store, "source")
    blobs_before = blob_names(store)
    store.copy(ModelName.parse("SOURCE"), ModelName.parse("example.com:5000/me/copy:v2"))
    source = store.read_manifest(ModelName.parse("source"))
    copy = store.read_manifest(ModelName.parse("example.com:5000/me/copy:v2"))
    assert copy.raw == source.raw and copy.digest == source.digest
    assert blob_names(store) == blobs_before
    store.copy(ModelName.parse("source"), ModelName.parse("Source"))
    assert len(store.list_models()) == 2
    with pytest.raises(ModelNotFoundError):
        store.copy(ModelName.parse("absent"), ModelName.parse("x"))
    store.delete(ModelName.parse("source"))
    assert load_model(store, ModelName.parse("example.com:5000/me/copy:v2")).template == "{{ .Prompt }}"


def test_replace_manifest_removes_layers_only_the_old_one_used(tmp_path: Path) -> None:
    store = Store(tmp_path)
    old = simple_model(store, "m", weights=b"weights", template="old")
    other = simple_model(store, "keeper", weights=b"weights", template="old")
    new_template = store.put_bytes(b"new")
    new = Manifest(config=old.config, layers=[old.layers[0], Layer(MEDIA_TYPE_TEMPLATE, new_template.digest, 3)])
    store.replace_manifest(ModelName.parse("m"), new)
    assert store.has_blob(old.layers[1].digest)
    other_template = store.put_bytes(b"other")
    replacement = Manifest(config=other.config, layers=[Layer(MEDIA_TYPE_TEMPLATE, other_template.digest, 5)])
    store.replace_manifest(ModelName.parse("keeper"), replacement)
    assert not store.has_blob(old.layers[1].digest)
    assert store.has_blob(old.layers[0].digest)
    assert load_model(store, ModelName.parse("m")).template == "new"


# ---- prune ------------------------------------------------------------------------------------------


def test_prune_removes_old_orphans_temps_and_empty_dirs(tmp_path: Path) -> None:
    store = Store(tmp_path)
    kept = simple_model(store, "kept")
    blobs = tmp_path / "blobs"
    old_orphan = store.put_bytes(b"old orphan")
    new_orphan = store.put_bytes(b"new orphan")
    junk_names = (".tmp-abc", f"sha256-{HEX}-partial", f"sha256-{HEX}-partial-0", "junk", "sha256-XYZ")
    junk = {name: blobs / name for name in junk_names}
    for path in junk.values():
        path.write_bytes(b"leftover")
    fresh_temp = blobs / ".tmp-fresh"
    fresh_temp.write_bytes(b"upload in progress")
    legacy_data = b"legacy blob name"
    legacy = blobs / f"sha256:{hashlib.sha256(legacy_data).hexdigest()}"
    legacy.write_bytes(legacy_data)
    (blobs / "splits" / "abc").mkdir(parents=True)
    model_dir = tmp_path / "manifests/registry.ollama.ai/library/kept"
    stale_manifest_temp = model_dir / ".tmp-xyz"
    stale_manifest_temp.write_bytes(b'{"schemaVersion":2,')
    empty = tmp_path / "manifests/registry.ollama.ai/gone/model"
    empty.mkdir(parents=True)
    fresh = {fresh_temp, store.blob_path(new_orphan.digest)}
    for path in [*blobs.iterdir(), stale_manifest_temp]:
        if path.is_file() and path not in fresh:
            age(path)

    removed = store.prune()

    assert removed == 1 + len(junk) + 1 + 2
    assert all(store.verify_blob(d) for d in kept.digests())
    assert not store.has_blob(old_orphan.digest)
    assert store.has_blob(new_orphan.digest)
    assert fresh_temp.exists()
    assert not any(path.exists() for path in junk.values())
    assert not legacy.exists() and store.verify_blob(sha256_digest(legacy_data))
    assert (blobs / "splits" / "abc").is_dir()
    assert not stale_manifest_temp.exists()
    assert not (tmp_path / "manifests/registry.ollama.ai/gone").exists()
    assert [s.name.display() for s in store.list_models()] == ["kept:latest"]

    assert store.prune(older_than=timedelta(0)) == 3
    assert blob_names(store) == {blob_filename(d) for d in kept.digests()} | {"splits"}


# ---- hostile or broken manifests on disk ----------------------------------------------------------

TRAVERSAL_DIGESTS = [
    "sha256:../../../outside/target",
    "sha256-../../../outside/target",
    "../../outside/target",
    "sha256:" + HEX[:60] + "/../",
    "sha256:" + HEX.upper(),
    "sha256:" + HEX + "/../../../outside/target",
    "",
    "/etc/passwd",
]


@pytest.mark.parametrize("bad_digest", TRAVERSAL_DIGESTS)
@pytest.mark.parametrize("where", ["config", "layer"])
def test_manifest_with_a_traversal_digest_is_refused(
    bad_digest: str, where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "target"
    target.write_bytes(b"must survive")
    root = tmp_path / "models"
    config = hand_blob(root, b"{}")
    weights = hand_blob(root, b"GGUF")
    layer = {"mediaType": MEDIA_TYPE_MODEL, **weights}
    if where == "config":
        config = {**config, "digest": bad_digest}
    else:
        layer["digest"] = bad_digest
    hand_manifest(root, ("registry.ollama.ai", "library", "evil", "latest"), manifest_doc(config, [layer]))
    simple_model(Store(root), "good")
    store = Store(root)
    evil = ModelName.parse("evil")

    with caplog.at_level(logging.WARNING):
        assert [s.name.display() for s in store.list_models()] == ["good:latest"]
    assert "evil" in caplog.text
    with pytest.raises(InvalidManifestError):
        store.read_manifest(evil)
    with pytest.raises(InvalidManifestError):
        load_model(store, evil)
    with pytest.raises(InvalidManifestError):
        store.copy(evil, ModelName.parse("evil2"))
    store.prune(older_than=timedelta(0))
    store.delete(evil)
    assert store.resolve(evil) is None
    assert target.read_bytes() == b"must survive"
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert [s.name.display() for s in store.list_models()] == ["good:latest"]
    assert all(store.verify_blob(d) for d in store.read_manifest(ModelName.parse("good")).manifest.digests())


@pytest.mark.parametrize("bad_digest", TRAVERSAL_DIGESTS)
def test_writing_a_manifest_with_a_traversal_digest_is_refused(bad_digest: str, tmp_path: Path) -> None:
    store = Store(tmp_path)
    config = store.put_bytes(b"{}")
    manifest = Manifest(
        config=Layer(MEDIA_TYPE_CONFIG, config.digest, 2), layers=[Layer(MEDIA_TYPE_MODEL, bad_digest, 1)]
    )
    with pytest.raises(InvalidManifestError):
        store.write_manifest(ModelName.parse("evil"), manifest)
    raw = go_json(manifest_doc({"digest": bad_digest, "size": 1}, []))
    with pytest.raises(InvalidManifestError):
        store.write_manifest(ModelName.parse("evil"), raw)
    assert files_under(tmp_path / "manifests") == set()


def test_list_models_skips_everything_that_is_not_a_valid_manifest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path)
    simple_model(store, "good")
    manifests = tmp_path / "manifests"
    (manifests / "stray-file").write_bytes(b"{}")
    (manifests / "registry.ollama.ai/library/three-levels").write_bytes(b"{}")
    (manifests / "registry.ollama.ai/library/m/dir-at-tag-level/x").mkdir(parents=True)
    (manifests / "registry.ollama.ai/library/m/not json").write_bytes(b"{}")
    (manifests / "registry.ollama.ai/library/m/garbage").write_bytes(b"\x00\xff not json")
    (manifests / "registry.ollama.ai/library/m/wrong-shape").write_bytes(b'{"layers": 5}')
    (manifests / "registry.ollama.ai/library/m/no-config").write_bytes(b'{"layers": []}')
    (manifests / "registry.ollama.ai/library/m/negative").write_bytes(
        go_json(manifest_doc({"digest": f"sha256:{HEX}", "size": -1}, []))
    )
    (manifests / "registry.ollama.ai/library/m/huge").write_bytes(
        go_json(manifest_doc({"digest": f"sha256:{HEX}", "size": 1}, [])) + b" " * MAX_MANIFEST_SIZE
    )
    os.mkfifo(manifests / "registry.ollama.ai/library/m/fifo")
    (manifests / "registry.ollama.ai/library/m/.tmp-unfinished").write_bytes(b'{"schema')
    with caplog.at_level(logging.WARNING):
        assert [s.name.display() for s in store.list_models()] == ["good:latest"]
    for skipped in ("not json", "garbage", "wrong-shape", "no-config", "negative", "huge"):
        assert skipped in caplog.text
    assert ".tmp-unfinished" not in caplog.text
    with pytest.raises(InvalidManifestError):
        store.read_manifest(ModelName.parse("m:huge"))
    with pytest.raises(ModelNotFoundError):
        store.read_manifest(ModelName.parse("m:fifo"))


def test_invalid_config_or_layers_fail_to_load(tmp_path: Path) -> None:
    root = tmp_path
    bad_config = hand_blob(root, b'{"model_format": 5}')
    params = hand_blob(root, b'["not", "an", "object"]')
    good_config = hand_blob(root, b"{}")
    hand_manifest(root, ("registry.ollama.ai", "library", "a", "latest"), manifest_doc(bad_config, []))
    hand_manifest(
        root,
        ("registry.ollama.ai", "library", "b", "latest"),
        manifest_doc(good_config, [{"mediaType": MEDIA_TYPE_PARAMS, **params}]),
    )
    missing = {"digest": sha256_digest(b"missing"), "size": 7}
    hand_manifest(
        root,
        ("registry.ollama.ai", "library", "c", "latest"),
        manifest_doc(good_config, [{"mediaType": MEDIA_TYPE_SYSTEM, **missing}]),
    )
    store = Store(root)
    with pytest.raises(InvalidLayerError):
        load_model(store, ModelName.parse("a"))
    with pytest.raises(InvalidLayerError):
        load_model(store, ModelName.parse("b"))
    with pytest.raises(BlobNotFoundError):
        load_model(store, ModelName.parse("c"))
    with pytest.raises(ModelNotFoundError):
        load_model(store, ModelName.parse("d"))


# ---- crash safety ------------------------------------------------------------------------------------

WRITER = r"""
import os, sys
from pathlib import Path
from ollama_core.names import ModelName
from ollama_core.store import MEDIA_TYPE_CONFIG, MEDIA_TYPE_MODEL, Layer, Manifest, Store

store = Store(Path(sys.argv[1]))
chunk = os.urandom(1 << 20)
if sys.argv[2] == "large-blob":
    config = store.put_bytes(b'{"model_format":"gguf"}')
    with store.blob_writer() as writer:
        for i in range(512):
            writer.write(chunk)
            if i == 8:
                print("writing", flush=True)
        blob = writer.commit()
    layers = [Layer(MEDIA_TYPE_MODEL, blob.digest, blob.size)]
    manifest = Manifest(config=Layer(MEDIA_TYPE_CONFIG, config.digest, config.size), layers=layers)
    store.write_manifest(ModelName.parse("victim"), manifest)
    print("finished", flush=True)
else:
    i = 0
    while True:
        with store.blob_writer() as writer:
            for _ in range(4):
                writer.write(os.urandom(256 << 10))
            blob = writer.commit()
        config = store.put_bytes(b'{"model_format":"gguf","n":%d}' % i)
        layers = [Layer(MEDIA_TYPE_MODEL, blob.digest, blob.size)]
        manifest = Manifest(config=Layer(MEDIA_TYPE_CONFIG, config.digest, config.size), layers=layers)
        store.replace_manifest(ModelName.parse(f"m{i % 3}"), manifest)
        print(i, flush=True)
        i += 1
"""


def start_writer(root: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), mode], stdout=subprocess.PIPE, text=True)


def assert_store_consistent(store: Store) -> None:
    """Every listed model loads with intact blobs, and no blob file holds content that is not its name."""
    for stored in store.list_models():
        load_model(store, stored.name)
        assert all(store.verify_blob(d) for d in stored.manifest.digests())
    for path in store.layout.blobs_dir.iterdir():
        if path.name.startswith("sha256-"):
            assert store.verify_blob(path.name), path.name


def test_kill_during_a_large_blob_write_leaves_no_partial_model(tmp_path: Path) -> None:
    root = tmp_path / "models"
    with start_writer(root, "large-blob") as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "writing"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    store = Store(root)
    assert store.list_models() == []
    with pytest.raises(ModelNotFoundError):
        load_model(store, ModelName.parse("victim"))
    assert_store_consistent(store)
    temps = [p for p in store.layout.blobs_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(temps) == 1 and temps[0].stat().st_size >= 9 << 20
    assert len(blob_names(store)) == 2

    assert store.prune() == 0
    for path in store.layout.blobs_dir.iterdir():
        age(path)
    assert store.prune() == 2
    assert blob_names(store) == set()


def test_repeated_kills_during_model_writes_keep_the_store_consistent(tmp_path: Path) -> None:
    root = tmp_path / "models"
    rng = random.Random(1234)
    for _ in range(4):
        with start_writer(root, "loop") as proc:
            try:
                assert proc.stdout is not None
                for _ in range(3):
                    assert proc.stdout.readline().strip().isdigit()
                time.sleep(rng.uniform(0, 0.05))
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        assert_store_consistent(Store(root))

    store = Store(root)
    models = store.list_models()
    assert 1 <= len(models) <= 3
    for path in [*store.layout.blobs_dir.iterdir(), *store.layout.manifests_dir.rglob(".tmp-*")]:
        age(path)
    store.prune()
    assert store.list_models() == models
    referenced = {blob_filename(d) for stored in models for d in stored.manifest.digests()}
    assert blob_names(store) == referenced
    assert not list(store.layout.manifests_dir.rglob(".tmp-*"))
    assert_store_consistent(store)
