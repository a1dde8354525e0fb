"""A hostile registry served by the test: every attack fails with a clear error and leaves no trace.

After each refused pull: no manifest, nothing in ``blobs/`` once leftovers are pruned, and nothing
written next to the store (the store is ``tmp_path/models``).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import ssl
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from ollama_core.errors import RequestError
from ollama_core.names import ModelName
from ollama_core.registry import RefusedError, RegistryPolicy, pull_model, push_model
from ollama_core.store import MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST, MEDIA_TYPE_PARAMS, Layer, Manifest, Store

from .conftest import Recorder, fast_policy
from .servers import FakeRegistry, RegistryHandler, digest_of

pytestmark = pytest.mark.timeout(10)

MANIFEST = "/v2/library/tiny/manifests/latest"
UPLOADS = "/v2/library/tiny/blobs/uploads/"


def name_on(registry: FakeRegistry) -> ModelName:
    return ModelName.parse(f"{registry.host}/library/tiny:latest")


def assert_clean(store: Store) -> None:
    manifests = store.root / "manifests"
    assert not manifests.exists() or not [p for p in manifests.rglob("*") if p.is_file()]
    store.prune(older_than=timedelta(0))
    blobs = store.root / "blobs"
    assert not blobs.exists() or not list(blobs.iterdir())
    assert {p.name for p in store.root.parent.iterdir()} <= {"models"}


def failed_pull(store: Store, registry: FakeRegistry, policy: RegistryPolicy | None = None) -> RequestError:
    started = time.monotonic()
    with pytest.raises(RequestError) as info:
        pull_model(store, name_on(registry), insecure=True, progress=Recorder(), policy=policy or fast_policy())
    assert time.monotonic() - started < 8
    assert_clean(store)
    return info.value


def blob_route(digest: str) -> str:
    return f"/v2/library/tiny/blobs/{digest}"


def trickle(registry: FakeRegistry, h: RegistryHandler, head: bytes, interval: float = 0.02) -> None:
    """Send ``head``, then one byte every ``interval`` seconds until the client goes away."""
    h.raw(head)
    while not registry.stopping.is_set():
        h.raw(b"a")
        time.sleep(interval)


def serve_manifest(registry: FakeRegistry, manifest: dict[str, object]) -> None:
    raw = msgspec.json.encode(manifest)
    registry.routes[("GET", MANIFEST)] = lambda h: h.reply(200, raw, {"Content-Type": MEDIA_TYPE_MANIFEST})


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../../../escaped",
        "../../escaped",
        "sha256:" + "A" * 64,
        "sha256:" + "0" * 63,
        "sha512:" + "0" * 128,
        "sha256:" + "0" * 64 + "/../../escaped",
    ],
)
def test_invalid_or_traversing_digest_is_refused(
    fake_registry: FakeRegistry, store: Store, tmp_path: Path, digest: str
) -> None:
    config = {"mediaType": MEDIA_TYPE_CONFIG, "digest": digest_of(b"{}"), "size": 2}
    serve_manifest(fake_registry, {"schemaVersion": 2, "config": config, "layers": [{**config, "digest": digest}]})
    error = failed_pull(store, fake_registry)
    assert "invalid digest" in error.message
    assert fake_registry.paths() == [f"GET {MANIFEST}"], "no blob is requested from a bad manifest"
    assert not (tmp_path / "escaped").exists()


def test_blob_content_not_matching_its_digest(fake_registry: FakeRegistry, store: Store) -> None:
    raw = fake_registry.add_small_model(params=b'{"seed":1}')
    digest = msgspec.json.decode(raw)["layers"][0]["digest"]
    fake_registry.blobs[digest] = b'{"seed":2}'
    error = failed_pull(store, fake_registry)
    assert error.message.startswith("digest mismatch, file must be downloaded again")


def test_endless_blob_body_is_cut_at_the_declared_size(fake_registry: FakeRegistry, store: Store) -> None:
    raw = fake_registry.add_small_model()
    digest = msgspec.json.decode(raw)["layers"][0]["digest"]

    def endless(h: RegistryHandler) -> None:
        h.raw(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        while not fake_registry.stopping.is_set():
            h.raw(b"A" * 65536)

    fake_registry.routes[("GET", blob_route(digest))] = endless
    assert failed_pull(store, fake_registry).message.startswith("digest mismatch")


def test_endless_manifest_is_cut_at_the_limit(fake_registry: FakeRegistry, store: Store) -> None:
    def endless(h: RegistryHandler) -> None:
        h.raw(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
        while not fake_registry.stopping.is_set():
            h.raw(b"[" * 65536)

    fake_registry.routes[("GET", MANIFEST)] = endless
    assert "response too large" in failed_pull(store, fake_registry).message


def test_oversized_manifest_is_refused_before_reading(fake_registry: FakeRegistry, store: Store) -> None:
    def huge(h: RegistryHandler) -> None:
        h.raw(b"HTTP/1.0 200 OK\r\nContent-Length: 5242880\r\n\r\n{")
        fake_registry.stopping.wait(5)

    fake_registry.routes[("GET", MANIFEST)] = huge
    assert "response too large (5242880 bytes" in failed_pull(store, fake_registry).message


def test_compressed_manifest_is_refused(fake_registry: FakeRegistry, store: Store) -> None:
    bomb = gzip.compress(b"\0" * (16 << 20))
    fake_registry.routes[("GET", MANIFEST)] = lambda h: h.reply(200, bomb, {"Content-Encoding": "gzip"})
    assert "compressed response" in failed_pull(store, fake_registry).message


def test_manifest_not_matching_its_announced_digest(fake_registry: FakeRegistry, store: Store) -> None:
    raw = fake_registry.add_small_model()
    headers = {"Docker-Content-Digest": digest_of(b"something else")}
    fake_registry.routes[("GET", MANIFEST)] = lambda h: h.reply(200, raw, headers)
    assert "does not match Docker-Content-Digest" in failed_pull(store, fake_registry).message


def test_blob_size_disagreeing_with_the_manifest(fake_registry: FakeRegistry, store: Store) -> None:
    raw = fake_registry.add_small_model()
    digest = msgspec.json.decode(raw)["layers"][0]["digest"]
    fake_registry.routes[("HEAD", blob_route(digest))] = lambda h: h.reply(200, b"x" * 1000)
    assert "registry reports 1000 bytes" in failed_pull(store, fake_registry).message


def test_blob_over_the_size_limit_is_refused_before_download(fake_registry: FakeRegistry, store: Store) -> None:
    fake_registry.add_small_model(params=b"x" * 4096)
    error = failed_pull(store, fake_registry, fast_policy(max_blob_size=1024))
    assert "larger than the 1024 byte limit" in error.message
    assert fake_registry.paths() == [f"GET {MANIFEST}"]


def test_wrong_content_range_is_refused(fake_registry: FakeRegistry, store: Store) -> None:
    raw = fake_registry.add_small_model(params=b"y" * 100)
    digest = msgspec.json.decode(raw)["layers"][0]["digest"]

    def shifted(h: RegistryHandler) -> None:
        if h.headers.get("Range") == "bytes=0-0":
            h.reply(206, b"y", {"Content-Range": "bytes 0-0/100"})
        else:
            h.reply(206, b"y" * 99, {"Content-Range": "bytes 1-99/100"})

    fake_registry.routes[("GET", blob_route(digest))] = shifted
    assert "different byte range" in failed_pull(store, fake_registry).message


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:{port}/v2/library/tiny/manifests/latest",
        "http://evil.example/v2/library/tiny/manifests/latest",
    ],
)
def test_manifest_redirect_off_the_registry_is_refused(
    fake_registry: FakeRegistry, store: Store, location: str
) -> None:
    target = location.format(port=fake_registry.port)
    fake_registry.routes[("GET", MANIFEST)] = lambda h: h.reply(307, headers={"Location": target})
    error = failed_pull(store, fake_registry)
    assert isinstance(error, RefusedError) and "refusing redirect" in error.message
    assert fake_registry.paths() == [f"GET {MANIFEST}"]


def test_redirect_loop_ends(fake_registry: FakeRegistry, store: Store) -> None:
    fake_registry.routes[("GET", MANIFEST)] = lambda h: h.reply(302, headers={"Location": MANIFEST})
    assert "too many redirects" in failed_pull(store, fake_registry).message


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata address"),
        ("http://169.254.10.1/blob", "link-local address"),
        ("http://2852039166/blob", "metadata address"),
        ("http://[::ffff:169.254.169.254]/blob", "metadata address"),
        ("http://[fe80::1]/blob", "link-local address"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata service"),
        ("http://0.0.0.0:{port}/storage/x", "unspecified address"),
        ("ftp://127.0.0.1/blob", "non-http(s)"),
    ],
)
def test_blob_redirect_to_a_refused_address(
    fake_registry: FakeRegistry, store: Store, location: str, reason: str
) -> None:
    raw = fake_registry.add_small_model()
    digest = msgspec.json.decode(raw)["layers"][0]["digest"]
    target = location.format(port=fake_registry.port)
    fake_registry.routes[("GET", blob_route(digest))] = lambda h: h.reply(307, headers={"Location": target})
    error = failed_pull(store, fake_registry)
    assert isinstance(error, RefusedError) and reason in error.message


def test_slow_manifest_body_fails_as_stalled(fake_registry: FakeRegistry, store: Store) -> None:
    head = b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n{"
    fake_registry.routes[("GET", MANIFEST)] = lambda h: trickle(fake_registry, h, head)
    error = failed_pull(store, fake_registry)
    assert error.status == 504 and "stalled" in error.message


def test_slow_headers_fail_as_stalled(fake_registry: FakeRegistry, store: Store) -> None:
    head = b"HTTP/1.0 200 OK\r\nX-Slow: "
    fake_registry.routes[("GET", MANIFEST)] = lambda h: trickle(fake_registry, h, head)
    error = failed_pull(store, fake_registry)
    assert error.status == 504 and "stalled" in error.message


def test_silent_registry_times_out(fake_registry: FakeRegistry, store: Store) -> None:
    def silent(h: RegistryHandler) -> None:
        fake_registry.stopping.wait(8)

    fake_registry.routes[("GET", MANIFEST)] = silent
    error = failed_pull(store, fake_registry, fast_policy(read_timeout=0.5))
    assert error.status == 504 and "timed out" in error.message


def test_slow_blob_fails_after_retries(fake_registry: FakeRegistry, store: Store) -> None:
    content = b"z" * (64 << 10)
    raw = fake_registry.add_small_model(params=content)
    digest = msgspec.json.decode(raw)["layers"][0]["digest"]
    size = len(content)

    def slow(h: RegistryHandler) -> None:
        if h.headers.get("Range") == "bytes=0-0":
            h.reply(206, b"z", {"Content-Range": f"bytes 0-0/{size}"})
            return
        start = int(h.headers["Range"].removeprefix("bytes=").split("-")[0])
        head = f"HTTP/1.0 206 Partial Content\r\nContent-Range: bytes {start}-{size - 1}/{size}\r\n"
        trickle(fake_registry, h, (head + f"Content-Length: {size - start}\r\n\r\n").encode())

    fake_registry.routes[("GET", blob_route(digest))] = slow
    error = failed_pull(store, fake_registry)
    assert error.status == 504 and "stalled" in error.message
    assert fake_registry.paths().count(f"GET {blob_route(digest)}") == 3, "one locate request, two attempts"


def test_token_realm_on_another_host_is_refused(fake_registry: FakeRegistry, store: Store) -> None:
    fake_registry.add_small_model()
    fake_registry.token = "secret"
    fake_registry.realm = f"http://localhost:{fake_registry.port}/token"
    error = failed_pull(store, fake_registry)
    assert isinstance(error, RefusedError) and "does not match registry host" in error.message
    assert "GET /token" not in fake_registry.paths()


def test_bearer_token_flow_and_blob_storage_redirect(fake_registry: FakeRegistry, store: Store) -> None:
    raw = fake_registry.add_small_model()
    digests = [layer["digest"] for layer in msgspec.json.decode(raw)["layers"]]
    fake_registry.token = "secret"
    fake_registry.realm = f"http://{fake_registry.host}/token"
    storage = f"http://localhost:{fake_registry.port}/storage/"

    def to_storage(h: RegistryHandler) -> None:
        h.reply(307, headers={"Location": storage + h.route_path.rsplit("/", 1)[1]})

    for digest in digests:
        fake_registry.routes[("GET", blob_route(digest))] = to_storage

    progress = Recorder()
    pull_model(store, name_on(fake_registry), insecure=True, progress=progress, policy=fast_policy())
    assert progress.statuses[-1] == "success"
    assert store.read_manifest(name_on(fake_registry)).raw == raw
    requests = fake_registry.requests
    token_requests = [headers for method, path, headers in requests if path == "/token"]
    assert len(token_requests) == 1 and "authorization" not in token_requests[0]
    storage_requests = [headers for _, path, headers in requests if path.startswith("/storage/")]
    assert storage_requests and all("authorization" not in headers for headers in storage_requests)
    after_token = requests[[path for _, path, _ in requests].index("/token") + 1 :]
    assert all(h.get("authorization") == "Bearer secret" for _, p, h in after_token if p.startswith("/v2/"))


def test_loopback_registry_is_refused_by_default(fake_registry: FakeRegistry, store: Store) -> None:
    fake_registry.add_small_model()
    error = failed_pull(store, fake_registry, RegistryPolicy())
    assert isinstance(error, RefusedError) and "loopback address" in error.message
    assert fake_registry.requests == [], "refused before connecting"


def test_unlisted_registry_is_refused(fake_registry: FakeRegistry, store: Store) -> None:
    fake_registry.add_small_model()
    error = failed_pull(store, fake_registry, RegistryPolicy(registries=("registry.example.com",)))
    assert isinstance(error, RefusedError) and "is not allowed" in error.message
    assert fake_registry.requests == []


def test_listed_registry_may_be_on_loopback(fake_registry: FakeRegistry, store: Store) -> None:
    fake_registry.add_small_model()
    policy = RegistryPolicy(registries=(fake_registry.host,))
    pull_model(store, name_on(fake_registry), insecure=True, progress=Recorder(), policy=policy)
    assert store.resolve(name_on(fake_registry)) is not None


def put_blob_model(store: Store, name: ModelName, content: bytes) -> None:
    layer = store.put_bytes(content)
    config = store.put_bytes(b"{}")
    store.write_manifest(
        name,
        Manifest(
            config=Layer(mediaType=MEDIA_TYPE_CONFIG, digest=config.digest, size=config.size),
            layers=[Layer(mediaType=MEDIA_TYPE_PARAMS, digest=layer.digest, size=layer.size)],
        ),
    )


def test_push_refuses_an_upload_location_on_another_host(fake_registry: FakeRegistry, store: Store) -> None:
    put_blob_model(store, name_on(fake_registry), b'{"seed":3}')
    elsewhere = f"http://localhost:{fake_registry.port}{UPLOADS}1"
    fake_registry.routes[("POST", UPLOADS)] = lambda h: h.reply(202, headers={"Location": elsewhere})
    with pytest.raises(RefusedError, match="upload location on another host"):
        push_model(store, name_on(fake_registry), insecure=True, progress=Recorder(), policy=fast_policy())
    assert not any(path.startswith("PUT") or path.startswith("PATCH") for path in fake_registry.paths())


class RedirectingUploads:
    """Chunked uploads whose parts the registry sends to blob storage with ``307`` (as Ollama's registry does)."""

    def __init__(self, registry: FakeRegistry, storage: str) -> None:
        self.registry = registry
        self.storage = storage
        self.parts: dict[int, bytes] = {}
        self.finals: list[str] = []
        registry.routes[("POST", UPLOADS)] = lambda h: h.reply(202, headers={"Location": UPLOADS + "u1"})
        registry.routes[("PATCH", UPLOADS + "u1")] = self.patch
        registry.routes[("PUT", UPLOADS + "u1")] = self.finish
        registry.routes[("PUT", "/storage-upload/*")] = self.store_part
        registry.routes[("PUT", MANIFEST)] = self.manifest

    def patch(self, h: RegistryHandler) -> None:
        h.body()
        start = int(h.headers["Content-Range"].split("-")[0])
        h.reply(307, headers={"Location": f"{self.storage}{start}", "Docker-Upload-Location": UPLOADS + "u1"})

    def store_part(self, h: RegistryHandler) -> None:
        self.parts[int(h.route_path.rsplit("/", 1)[1])] = h.body()
        h.reply(200)

    def finish(self, h: RegistryHandler) -> None:
        self.finals.append(h.path)
        data = h.body() or b"".join(self.parts[offset] for offset in sorted(self.parts))
        self.registry.blobs[digest_of(data)] = data
        self.parts.clear()
        h.reply(201)

    def manifest(self, h: RegistryHandler) -> None:
        self.registry.manifests[("library/tiny", "latest")] = h.body()
        h.reply(201)


def test_push_sends_redirected_parts_to_blob_storage(fake_registry: FakeRegistry, store: Store) -> None:
    content = hashlib.sha256(b"seed").digest() * ((17 << 20) // 32)
    put_blob_model(store, name_on(fake_registry), content)
    uploads = RedirectingUploads(fake_registry, f"http://localhost:{fake_registry.port}/storage-upload/")
    progress = Recorder()
    push_model(store, name_on(fake_registry), insecure=True, progress=progress, policy=fast_policy())
    assert progress.statuses[-2:] == ["pushing manifest", "success"]
    assert fake_registry.blobs[digest_of(content)] == content
    assert fake_registry.manifests[("library/tiny", "latest")] == store.read_manifest(name_on(fake_registry)).raw
    assert any("etag=" in final for final in uploads.finals)
    storage = [h for _, p, h in fake_registry.requests if p.startswith("/storage-upload/")]
    assert len(storage) == 2 and all("authorization" not in h for h in storage)


def test_push_refuses_part_redirect_to_metadata(fake_registry: FakeRegistry, store: Store) -> None:
    content = b"m" * (17 << 20)
    put_blob_model(store, name_on(fake_registry), content)
    RedirectingUploads(fake_registry, "http://169.254.169.254/upload/")
    with pytest.raises(RefusedError, match="metadata address"):
        push_model(store, name_on(fake_registry), insecure=True, progress=Recorder(), policy=fast_policy())
    assert ("library/tiny", "latest") not in fake_registry.manifests


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    command += ["-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


def test_https_registry_verifies_certificates_and_refuses_downgrade(
    certificate: tuple[Path, Path], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    registry = FakeRegistry(tls=context).start()
    try:
        raw = registry.add_small_model()
        name = ModelName.parse(f"localhost:{registry.port}/library/tiny:latest")
        with pytest.raises(RequestError, match="CERTIFICATE_VERIFY_FAILED"):
            pull_model(store, name, insecure=False, progress=Recorder(), policy=fast_policy())

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        pull_model(store, name, insecure=False, progress=Recorder(), policy=fast_policy())
        assert store.read_manifest(name).raw == raw

        digest = msgspec.json.decode(registry.add_small_model(params=b'{"seed":9}'))["layers"][0]["digest"]
        plain = f"http://localhost:{registry.port}/storage/{digest}"
        registry.routes[("GET", blob_route(digest))] = lambda h: h.reply(307, headers={"Location": plain})
        with pytest.raises(RefusedError, match="from https to http"):
            pull_model(store, name, insecure=False, progress=Recorder(), policy=fast_policy())
    finally:
        registry.stop()
