"""Manifest files: case-insensitive lookup, bounded reads, atomic writes, listing and cleanup."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from ollama_core.names import InvalidNameError, ModelName
from ollama_core.store.atomic import fsync_dir, read_bounded, remove_durably, write_atomic
from ollama_core.store.errors import InvalidManifestError, ModelNotFoundError
from ollama_core.store.layout import Layout, is_temp_name
from ollama_core.store.schema import MAX_MANIFEST_SIZE, Manifest, decode_manifest

log = logging.getLogger(__name__)


class StoredManifest(msgspec.Struct, frozen=True):
    """A manifest as found on disk.

    ``name`` is the stored spelling, ``digest`` the hex SHA-256 of the file bytes (``raw``),
    ``size`` the sum of config and layer sizes, ``modified_at`` the file's mtime.
    """

    name: ModelName
    manifest: Manifest
    digest: str
    size: int
    modified_at: datetime
    raw: bytes


class ManifestStore:
    """The ``manifests/`` tree of a store."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def resolve(self, name: ModelName) -> ModelName | None:
        """The stored spelling of ``name`` (matched part by part, ignoring case), or ``None``."""
        return next(iter(self.variants(name)), None)

    def variants(self, name: ModelName) -> list[ModelName]:
        """Every stored manifest whose name equals ``name`` ignoring case; the exact spelling first."""
        found: list[ModelName] = []
        wanted = name.parts()

        def walk(directory: Path, depth: int, spelled: tuple[str, ...]) -> None:
            for entry in _matching_entries(directory, wanted[depth]):
                if depth < 3 and entry.is_dir():
                    walk(Path(entry.path), depth + 1, (*spelled, entry.name))
                elif depth == 3 and entry.is_file():
                    found.append(ModelName(*spelled, entry.name, scheme=name.scheme))

        walk(self.layout.manifests_dir, 0, ())
        return found

    def canonical(self, name: ModelName) -> ModelName:
        """``name`` spelled as already stored: the existing manifest, else the existing directories."""
        existing = self.resolve(name)
        if existing is not None:
            return existing
        parts = list(name.parts())
        directory = self.layout.manifests_dir
        for depth in range(3):
            match = next((e for e in _matching_entries(directory, parts[depth]) if e.is_dir()), None)
            if match is None:
                break
            parts[depth] = match.name
            directory = Path(match.path)
        return ModelName(*parts, scheme=name.scheme)

    def read(self, name: ModelName) -> StoredManifest:
        """The manifest stored for ``name`` (any case); raises :class:`ModelNotFoundError`."""
        stored = self.resolve(name)
        if stored is None:
            raise ModelNotFoundError(name)
        try:
            return self._read_file(stored)
        except FileNotFoundError:
            raise ModelNotFoundError(name) from None

    def write(self, name: ModelName, raw: bytes) -> ModelName:
        """Atomically store ``raw`` for ``name``, reusing the stored spelling; returns that spelling.

        Other manifests that differ from ``name`` only in case are removed.
        """
        decode_manifest(raw)
        target = self.canonical(name)
        path = self.layout.manifest_path(target)
        write_atomic(path, raw)
        for variant in self.variants(name):
            if variant.parts() != target.parts():
                self.remove(variant)
        return target

    def remove(self, name: ModelName) -> bool:
        """Delete the manifest file of exactly ``name`` and the directories it leaves empty."""
        path = self.layout.manifest_path(name)
        removed = remove_durably(path)
        self._remove_empty_parents(path)
        return removed

    def scan(self) -> list[StoredManifest]:
        """Every readable, valid manifest exactly four levels below ``manifests/``, sorted by name.

        Anything else found there is skipped with a warning; unfinished writes are skipped silently.
        """
        result: list[StoredManifest] = []
        for rel in self._manifest_files():
            try:
                name = ModelName(*rel)
            except InvalidNameError:
                log.warning("skipping manifest with an invalid name: %s", "/".join(rel))
                continue
            try:
                result.append(self._read_file(name))
            except FileNotFoundError:
                continue
            except (OSError, InvalidManifestError) as exc:
                log.warning("skipping unreadable manifest %s: %s", name.display(), exc)
        result.sort(key=lambda stored: stored.name.casefold_key())
        return result

    def prune(self, is_stale: Callable[[os.stat_result], bool]) -> int:
        """Remove stale unfinished writes and empty directories; returns how many entries went."""
        removed = 0
        root = self.layout.manifests_dir
        if not root.is_dir():
            return 0
        for directory, dirnames, filenames in os.walk(root, topdown=False):
            here = Path(directory)
            for filename in filenames:
                path = here / filename
                if is_temp_name(filename) and is_stale(path.lstat()):
                    path.unlink(missing_ok=True)
                    removed += 1
            if here != root and not any(here.iterdir()):
                here.rmdir()
                fsync_dir(here.parent)
                removed += 1
        return removed

    def _manifest_files(self) -> Iterator[tuple[str, str, str, str]]:
        def walk(directory: Path, spelled: tuple[str, ...]) -> Iterator[tuple[str, str, str, str]]:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                return
            for entry in entries:
                if len(spelled) < 3:
                    if entry.is_dir():
                        yield from walk(Path(entry.path), (*spelled, entry.name))
                elif entry.is_file() and not is_temp_name(entry.name):
                    yield (spelled[0], spelled[1], spelled[2], entry.name)

        return walk(self.layout.manifests_dir, ())

    def _read_file(self, name: ModelName) -> StoredManifest:
        raw, info = read_bounded(self.layout.manifest_path(name), MAX_MANIFEST_SIZE)
        manifest = decode_manifest(raw)
        modified = datetime.fromtimestamp(info.st_mtime_ns // 1_000_000_000, tz=timezone.utc)
        modified = modified.replace(microsecond=info.st_mtime_ns % 1_000_000_000 // 1000).astimezone()
        return StoredManifest(
            name=name,
            manifest=manifest,
            digest=hashlib.sha256(raw).hexdigest(),
            size=manifest.total_size(),
            modified_at=modified,
            raw=raw,
        )

    def _remove_empty_parents(self, path: Path) -> None:
        directory = path.parent
        while directory != self.layout.manifests_dir:
            try:
                directory.rmdir()
            except OSError:
                return
            fsync_dir(directory.parent)
            directory = directory.parent


def _matching_entries(directory: Path, part: str) -> list[os.DirEntry[str]]:
    """Entries of ``directory`` named ``part`` ignoring ASCII case; the exact spelling first."""
    folded = part.lower()
    try:
        with os.scandir(directory) as it:
            matches = [e for e in it if e.name.isascii() and e.name.lower() == folded]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(matches, key=lambda e: (e.name != part, e.name))
