"""``ollama pull``: fetch a manifest and its blobs from a registry into the store.

Order, as Ollama reports it: ``pulling manifest``; ``pulling <12 hex>`` per layer and config
(throttled while downloading, once with ``completed == total`` for blobs already present);
``verifying sha256 digest``; ``writing manifest``; ``removing unused layers`` when the pull
replaced layers of an earlier version; ``success``. The manifest is validated before any path is
built from it and written last, atomically, so an interrupted pull never shows up as a model.
Each blob is checked against its SHA-256 as soon as it is complete and only then moved into the
store; ``verifying sha256 digest`` is reported once all of them have passed.
"""

from __future__ import annotations

import hashlib
import logging
from ollama_core.digests import InvalidDigestError, parse_digest
from ollama_core.errors import RequestError
from ollama_core.names import ModelName
from ollama_core.progress import ProgressSink
from ollama_core.registry.bodies import read_limited
from ollama_core.registry.client import RegistryClient
from ollama_core.registry.download import BlobDownload
from ollama_core.registry.errors import UpstreamError
from ollama_core.registry.policy import RegistryPolicy
from ollama_core.registry.reporter import Reporter
from ollama_core.store import (
    MEDIA_TYPE_MANIFEST,
    InvalidManifestError,
    Manifest,
    ModelNotFoundError,
    Store,
    StoreError,
    decode_manifest,
)

log = logging.getLogger(__name__)

VERB = "pulling"
WHAT = "pull model manifest"


def pull_model(
    store: Store,
    name: ModelName,
    *,
    insecure: bool,
    progress: ProgressSink,
    policy: RegistryPolicy,
    prune: bool = True,
) -> None:
    """Pull ``name`` from its registry into ``store``, reporting through ``progress``.

    ``insecure`` talks ``http``. With ``prune`` (``OLLAMA_NOPRUNE`` unset), blobs only the
    replaced manifest used are deleted. Raises :class:`RequestError` (``pull model manifest:
    file does not exist`` for an unknown model); an exception raised by ``progress`` aborts the
    pull, keeping partial downloads for a later resume.
    """
    report = Reporter(progress)
    previous = _stored_digests(store, name)
    try:
        with RegistryClient(name, insecure=insecure, policy=policy) as client:
            report.status("pulling manifest")
            raw = fetch_manifest(client, name.tag)
            manifest = _decode(raw)
            blobs = _blob_sizes(manifest, policy)
            for digest, size in blobs.items():
                _download(store, client, digest, size, report)
            report.status("verifying sha256 digest")
    except OSError as exc:
        raise RequestError(500, f"pull model: {exc.strerror or type(exc).__name__}") from None
    report.status("writing manifest")
    try:
        if prune:
            store.replace_manifest(name, raw)
        else:
            store.write_manifest(name, raw)
    except StoreError as exc:
        raise RequestError(500, f"write manifest: {exc}") from None
    except OSError as exc:
        raise RequestError(500, f"write manifest: {exc.strerror or type(exc).__name__}") from None
    if prune and previous - blobs.keys():
        report.status("removing unused layers")
    report.status("success")


def fetch_manifest(client: RegistryClient, tag: str) -> bytes:
    """The manifest bytes for ``tag``, size- and time-capped, checked against ``Docker-Content-Digest``."""
    response, _ = client.follow(
        "GET", client.manifest_url(tag), what=WHAT, headers={"Accept": MEDIA_TYPE_MANIFEST}, storage=False
    )
    try:
        if response.status_code != 200:
            raise client.error(response, WHAT)
        raw = read_limited(response, client.policy.max_manifest_size, client.policy.body_deadline, WHAT)
        announced = response.headers.get("docker-content-digest", "")
    finally:
        response.close()
    if announced:
        actual = "sha256:" + hashlib.sha256(raw).hexdigest()
        try:
            expected = parse_digest(announced.strip())
        except InvalidDigestError:
            expected = actual
        if expected != actual:
            raise UpstreamError(f"{WHAT}: content does not match Docker-Content-Digest {expected}")
    return raw


def _decode(raw: bytes) -> Manifest:
    try:
        return decode_manifest(raw)
    except InvalidManifestError as exc:
        raise UpstreamError(f"{WHAT}: {exc}") from None


def _blob_sizes(manifest: Manifest, policy: RegistryPolicy) -> dict[str, int]:
    """Each distinct blob (layers first, then the config) with its declared size, checked."""
    sizes: dict[str, int] = {}
    for layer in (*manifest.layers, manifest.config):
        digest = parse_digest(layer.digest)
        if layer.size > policy.max_blob_size:
            raise UpstreamError(f"{WHAT}: blob {digest} is larger than the {policy.max_blob_size} byte limit")
        if sizes.setdefault(digest, layer.size) != layer.size:
            raise UpstreamError(f"{WHAT}: blob {digest} is listed with two different sizes")
    return sizes


def _stored_digests(store: Store, name: ModelName) -> set[str]:
    try:
        return set(store.read_manifest(name).manifest.digests())
    except ModelNotFoundError:
        return set()
    except (StoreError, OSError) as exc:
        log.warning("existing manifest of %s is unreadable: %s", name.display(), exc)
        return set()


def _download(store: Store, client: RegistryClient, digest: str, size: int, report: Reporter) -> None:
    """Download, verify and store one blob unless it is present.

    Each blob is locked only while it is being fetched and verified, so concurrent pulls that
    share blobs in a different order cannot wait on each other.
    """
    if store.has_blob(digest):
        present = store.blob_path(digest).stat().st_size
        report.transfer(VERB, digest, present, present, force=True)
        return
    with BlobDownload(store, client, digest, size) as download:
        if download.acquire(lambda: report.transfer(VERB, digest, size, 0)):
            download.fetch(lambda completed: report.transfer(VERB, digest, size, completed))
            download.verify()
            download.commit()
    report.transfer(VERB, digest, size, size, force=True)
