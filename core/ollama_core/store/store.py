"""The model store: blobs and manifests under one root, laid out as Ollama lays them out."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

from ollama_core.digests import InvalidDigestError, parse_digest
from ollama_core.names import ModelName
from ollama_core.store.blobs import BlobInfo, BlobStore, BlobWriter
from ollama_core.store.errors import BlobNotFoundError, InvalidLayerError, InvalidManifestError, ModelNotFoundError
from ollama_core.store.layout import Layout
from ollama_core.store.manifests import ManifestStore, StoredManifest
from ollama_core.store.schema import Manifest, ModelConfig, decode_manifest, encode_manifest

log = logging.getLogger(__name__)

MAX_SMALL_LAYER_SIZE = 8 << 20
"""Largest config, template, system, parameters, messages or license blob read into memory."""

DEFAULT_ROOT = "~/.ollama/models"
_LEGACY_BLOB_RE = re.compile(r"sha256:[0-9a-f]{64}")


class Store:
    """A model store rooted at ``root`` (``$OLLAMA_MODELS``); directories are created when first needed.

    Manifest changes and garbage collection are serialised within the process.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.layout = Layout(self.root)
        self._blobs = BlobStore(self.layout)
        self._manifests = ManifestStore(self.layout)
        self._lock = threading.RLock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Store:
        """The store named by ``OLLAMA_MODELS`` (``~`` expanded), default ``~/.ollama/models``."""
        env = os.environ if environ is None else environ
        return cls(Path(env.get("OLLAMA_MODELS") or DEFAULT_ROOT).expanduser())

    def blob_path(self, digest: str) -> Path:
        """The file of blob ``digest``; raises ``InvalidDigestError`` for a malformed digest."""
        return self._blobs.path(digest)

    def has_blob(self, digest: str) -> bool:
        """Whether blob ``digest`` is present (content not re-hashed; see :meth:`verify_blob`)."""
        return self._blobs.exists(digest)

    def verify_blob(self, digest: str) -> bool:
        """Whether blob ``digest`` is present and its content hashes to ``digest``."""
        return self._blobs.verify(digest)

    def blob_writer(self, expected_digest: str | None = None, max_size: int | None = None) -> BlobWriter:
        """A context manager that streams a new blob into the store (see :class:`BlobWriter`)."""
        return self._blobs.writer(expected_digest, max_size)

    def put_bytes(self, data: bytes) -> BlobInfo:
        """Store ``data`` as a blob."""
        return self._blobs.put_bytes(data)

    def put_file(self, path: Path) -> BlobInfo:
        """Copy the file at ``path`` into the store as a blob."""
        return self._blobs.put_file(path)

    def read_text(self, digest: str, max_size: int = MAX_SMALL_LAYER_SIZE) -> str:
        """A small text layer (template, system, license) decoded as UTF-8."""
        return self._blobs.read(digest, max_size).decode("utf-8", errors="replace")

    def read_json(self, digest: str, max_size: int = MAX_SMALL_LAYER_SIZE) -> Any:
        """A small JSON layer (parameters, messages); raises :class:`InvalidLayerError` if not JSON."""
        try:
            return msgspec.json.decode(self._blobs.read(digest, max_size))
        except msgspec.DecodeError as exc:
            raise InvalidLayerError(f"layer {parse_digest(digest)} is not valid JSON: {exc}") from None

    def read_config(self, stored: StoredManifest) -> ModelConfig:
        """The config blob of a stored manifest."""
        digest = stored.manifest.config.digest
        try:
            return msgspec.json.decode(self._blobs.read(digest, MAX_SMALL_LAYER_SIZE), type=ModelConfig)
        except msgspec.DecodeError as exc:
            raise InvalidLayerError(f"config {parse_digest(digest)} is invalid: {exc}") from None

    def resolve(self, name: ModelName) -> ModelName | None:
        """The stored spelling of ``name`` if a manifest exists for it in any case, else ``None``."""
        return self._manifests.resolve(name)

    def read_manifest(self, name: ModelName) -> StoredManifest:
        """The manifest of ``name`` (any case); raises :class:`ModelNotFoundError`."""
        return self._manifests.read(name)

    def list_models(self) -> list[StoredManifest]:
        """Every valid manifest in the store; invalid ones are logged and skipped."""
        return self._manifests.scan()

    def write_manifest(self, name: ModelName, manifest: Manifest | bytes) -> str:
        """Atomically store a manifest (bytes are kept byte for byte); returns its hex digest.

        Every digest is validated and every blob it names must already be in the store, so a
        model never becomes visible before its content. A stored spelling of ``name`` in another
        case is reused and other case variants are replaced.
        """
        raw = encode_manifest(manifest) if isinstance(manifest, Manifest) else bytes(manifest)
        parsed = decode_manifest(raw)
        with self._lock:
            for digest in parsed.digests():
                if not self._blobs.exists(digest):
                    raise BlobNotFoundError(digest)
            self._manifests.write(name, raw)
        return hashlib.sha256(raw).hexdigest()

    def replace_manifest(self, name: ModelName, manifest: Manifest | bytes) -> str:
        """Like :meth:`write_manifest`, then delete the blobs only the replaced manifest used."""
        with self._lock:
            previous = self._referenced_by(name)
            digest = self.write_manifest(name, manifest)
            self._remove_unreferenced(previous)
        return digest

    def copy(self, src: ModelName, dst: ModelName) -> None:
        """Give model ``src`` a second name (only the manifest file is copied)."""
        with self._lock:
            stored = self._manifests.read(src)
            target = self._manifests.canonical(dst)
            if target.parts() == stored.name.parts():
                return
            self._manifests.write(target, stored.raw)

    def delete(self, name: ModelName) -> None:
        """Remove model ``name`` and every blob no other manifest uses; raises :class:`ModelNotFoundError`."""
        with self._lock:
            stored = self._manifests.resolve(name)
            if stored is None:
                raise ModelNotFoundError(name)
            candidates = self._referenced_by(stored)
            self._manifests.remove(stored)
            self._remove_unreferenced(candidates)

    def prune(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Garbage-collect what was last modified more than ``older_than`` ago; returns the count removed.

        Removes blobs no valid manifest references, files in ``blobs/`` whose names are not blob
        names (unfinished writes, partial downloads), unfinished manifest writes and empty manifest
        directories. Blobs with the legacy ``sha256:<hex>`` file name are renamed first.
        """
        cutoff = time.time() - older_than.total_seconds()

        def is_stale(info: os.stat_result) -> bool:
            return info.st_mtime <= cutoff

        removed = 0
        with self._lock:
            referenced = self._all_referenced()
            for entry in list(self._blobs.entries()):
                if entry.is_dir(follow_symlinks=False):
                    continue
                if _LEGACY_BLOB_RE.fullmatch(entry.name):
                    self._rename_legacy_blob(entry.name)
                    continue
                if not is_stale(entry.stat(follow_symlinks=False)):
                    continue
                try:
                    digest = parse_digest(entry.name)
                except InvalidDigestError:
                    digest = None
                if digest is None or digest not in referenced:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
            removed += self._manifests.prune(is_stale)
        if removed:
            log.info("pruned %d unused files from the model store", removed)
        return removed

    def _referenced_by(self, name: ModelName) -> set[str]:
        try:
            return set(self._manifests.read(name).manifest.digests())
        except ModelNotFoundError:
            return set()
        except (OSError, InvalidManifestError) as exc:
            log.warning("manifest of %s is unreadable; its blobs are left for prune: %s", name.display(), exc)
            return set()

    def _all_referenced(self) -> set[str]:
        return {digest for stored in self._manifests.scan() for digest in stored.manifest.digests()}

    def _remove_unreferenced(self, candidates: Iterable[str]) -> None:
        unused = set(candidates) - self._all_referenced()
        for digest in sorted(unused):
            if self._blobs.remove(digest):
                log.debug("removed unused blob %s", digest)

    def _rename_legacy_blob(self, filename: str) -> None:
        source = self.layout.blobs_dir / filename
        target = self.blob_path(filename)
        if target.exists():
            source.unlink(missing_ok=True)
        else:
            os.replace(source, target)
