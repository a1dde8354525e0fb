"""``ollama push``: upload a stored model's blobs and manifest to a registry.

Per blob (layers, then the config): ``HEAD`` (present → done), ``POST .../blobs/uploads/``
(with ``mount``/``from`` when the layer names a source model on the same registry), then a
monolithic ``PUT ?digest=`` for blobs up to 16 MiB, or sequential ``PATCH`` parts with
``Content-Range`` and a final ``PUT ?digest=&etag=``. A ``307`` answer to a ``PATCH`` sends that
part with ``PUT`` to the blob storage it names (without credentials). Upload locations must stay
on the registry host. Finally the manifest bytes, exactly as stored, are ``PUT`` under the tag.
Progress: ``retrieving manifest``, ``pushing <12 hex>``, ``pushing manifest``, ``success``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator

import httpx

from ollama_core.digests import digest_hex, parse_digest
from ollama_core.errors import RequestError
from ollama_core.names import InvalidNameError, ModelName
from ollama_core.progress import ProgressSink
from ollama_core.registry.client import RegistryClient
from ollama_core.registry.download import MAX_PART_SIZE, MIN_PART_SIZE, PARTS
from ollama_core.registry.errors import UpstreamError
from ollama_core.registry.policy import RegistryPolicy, split_host
from ollama_core.registry.reporter import Reporter
from ollama_core.store import MEDIA_TYPE_MANIFEST, Layer, ModelNotFoundError, Store, StoredManifest, StoreError

VERB = "pushing"
CHUNK_SIZE = 1 << 20
MONOLITHIC_LIMIT = MIN_PART_SIZE
"""Blobs up to this size are sent in one ``PUT``; larger ones in ``PATCH`` parts."""
OCTET_STREAM = "application/octet-stream"


def push_model(
    store: Store, name: ModelName, *, insecure: bool, progress: ProgressSink, policy: RegistryPolicy
) -> None:
    """Push model ``name`` from ``store`` to its registry, reporting through ``progress``.

    Raises :class:`RequestError`; an exception raised by ``progress`` aborts the push.
    """
    report = Reporter(progress)
    report.status("retrieving manifest")
    try:
        with RegistryClient(name, insecure=insecure, policy=policy) as client:
            stored = _read_manifest(store, name, report)
            layers = {parse_digest(layer.digest): layer for layer in (*stored.manifest.layers, stored.manifest.config)}
            for digest, layer in layers.items():
                _push_blob(store, client, digest, layer, report)
            report.status("pushing manifest")
            _push_manifest(client, name.tag, stored)
    except OSError as exc:
        raise RequestError(500, f"push model: {exc.strerror or type(exc).__name__}") from None
    report.status("success")


def _read_manifest(store: Store, name: ModelName, report: Reporter) -> StoredManifest:
    try:
        return store.read_manifest(name)
    except ModelNotFoundError:
        report.status("couldn't retrieve manifest")
        raise RequestError(404, f"model '{name.display()}' not found") from None
    except (StoreError, OSError):
        report.status("couldn't retrieve manifest")
        raise RequestError(500, f"manifest of '{name.display()}' is unreadable") from None


def _push_manifest(client: RegistryClient, tag: str, stored: StoredManifest) -> None:
    what = "push manifest"
    headers = {"Content-Type": stored.manifest.mediaType or MEDIA_TYPE_MANIFEST}
    response = client.send("PUT", client.manifest_url(tag), what=what, headers=headers, body=stored.raw)
    if not response.is_success:
        raise client.error(response, what)
    response.close()


def _push_blob(store: Store, client: RegistryClient, digest: str, layer: Layer, report: Reporter) -> None:
    what = f"push blob {digest_hex(digest)[:12]}"
    try:
        fd = os.open(store.blob_path(digest), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RequestError(500, f"{what}: blob {digest} is missing from the store") from None
    try:
        size = os.fstat(fd).st_size
        if size != layer.size:
            raise RequestError(500, f"{what}: stored blob has {size} bytes, the manifest says {layer.size}")
        location = None if _exists(client, digest, what) else _start_upload(client, digest, layer, what)
        if location is None:
            report.transfer(VERB, digest, size, size, force=True)
            return
        report.transfer(VERB, digest, size, 0, force=True)

        def on_read(position: int) -> None:
            report.transfer(VERB, digest, size, position)

        if size <= MONOLITHIC_LIMIT:
            section = _Section(fd, 0, size, on_read)
            _finish(client, location, {"digest": digest}, section, size, what)
        else:
            location, etag = _send_parts(client, location, fd, size, on_read, what)
            _finish(client, location, {"digest": digest, "etag": etag}, None, 0, what)
        report.transfer(VERB, digest, size, size, force=True)
    finally:
        os.close(fd)


def _exists(client: RegistryClient, digest: str, what: str) -> bool:
    response = client.send("HEAD", client.blob_url(digest), what=what)
    if response.status_code == 200:
        response.close()
        return True
    if response.status_code == 404:
        response.close()
        return False
    raise client.error(response, what)


def _start_upload(client: RegistryClient, digest: str, layer: Layer, what: str) -> httpx.URL | None:
    """The upload location, or ``None`` if the registry mounted the blob from ``layer.from_``."""
    url = client.uploads_url()
    source = _mount_source(client, layer)
    if source:
        url = url.copy_merge_params({"mount": digest, "from": source})
    response = client.send("POST", url, what=what)
    if response.status_code == 201 and source:
        response.close()
        return None
    if response.status_code != 202:
        raise client.error(response, what)
    location = client.location(response, url, what)
    response.close()
    return location


def _mount_source(client: RegistryClient, layer: Layer) -> str:
    """``namespace/model`` of the layer's source model if it lives on the same registry."""
    if not layer.from_:
        return ""
    try:
        source = ModelName.parse(layer.from_)
    except InvalidNameError:
        return ""
    if split_host(source.host) != split_host(client.name.host):
        return ""
    return f"{source.namespace}/{source.model}"


def _send_parts(
    client: RegistryClient, location: httpx.URL, fd: int, size: int, on_read: Callable[[int], None], what: str
) -> tuple[httpx.URL, str]:
    """``PATCH`` each part in order; returns the final location and the ``etag`` (MD5 of part MD5s)."""
    part_size = min(max(size // PARTS, MIN_PART_SIZE), MAX_PART_SIZE)
    sums = hashlib.md5(usedforsecurity=False)
    count = 0
    for offset in range(0, size, part_size):
        length = min(part_size, size - offset)
        section = _Section(fd, offset, length, on_read)
        headers = {
            "Content-Type": OCTET_STREAM,
            "Content-Length": str(length),
            "Content-Range": f"{offset}-{offset + length - 1}",
            "X-Redirect-Uploads": "1",
        }
        response = client.send("PATCH", location, what=what, headers=headers, body=section)
        if response.status_code == 307:
            if "docker-upload-location" not in response.headers:
                response.close()
                raise UpstreamError(f"{what}: redirected part without a Docker-Upload-Location")
            next_location = client.location(response, location, what)
            target = client.redirect_target(response, location, what)
            client.check_storage(target, what)
            _put_to_storage(client, target, section, length, what)
            location = next_location
        elif response.status_code == 202:
            location = client.location(response, location, what)
            response.close()
        else:
            raise client.error(response, what)
        sums.update(section.md5.digest())
        count += 1
    return location, f"{sums.hexdigest()}-{count}"


def _put_to_storage(client: RegistryClient, target: httpx.URL, section: _Section, length: int, what: str) -> None:
    headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(length)}
    response = client.send_storage("PUT", target, what=what, headers=headers, body=section)
    if not response.is_success:
        raise client.error(response, what)
    response.close()


def _finish(
    client: RegistryClient, location: httpx.URL, params: dict[str, str], body: _Section | None, length: int, what: str
) -> None:
    url = location.copy_merge_params(params)
    headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(length)}
    response = client.send("PUT", url, what=what, headers=headers, body=body if body is not None else b"")
    if not response.is_success:
        raise client.error(response, what)
    response.close()


class _Section:
    """A byte range of a blob file as a re-readable request body that reports progress as it is read."""

    def __init__(self, fd: int, offset: int, length: int, on_read: Callable[[int], None]) -> None:
        self._fd = fd
        self._offset = offset
        self._length = length
        self._on_read = on_read
        self.md5 = hashlib.md5(usedforsecurity=False)

    def __call__(self) -> Iterator[bytes]:
        self.md5 = hashlib.md5(usedforsecurity=False)
        position, end = self._offset, self._offset + self._length
        while position < end:
            chunk = os.pread(self._fd, min(CHUNK_SIZE, end - position), position)
            if not chunk:
                raise RequestError(500, "blob file shrank while being uploaded")
            self.md5.update(chunk)
            position += len(chunk)
            self._on_read(position)
            yield chunk
