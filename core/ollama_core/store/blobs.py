"""Content-addressed blobs: streamed, hashed, size-capped writes that appear atomically under their digest."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import msgspec

from ollama_core.digests import blob_filename, parse_digest, sha256_digest
from ollama_core.store.atomic import FILE_MODE, ensure_dir, fsync_dir, read_bounded, remove_durably
from ollama_core.store.errors import BlobNotFoundError, BlobTooLargeError, DigestMismatchError
from ollama_core.store.layout import TEMP_PREFIX, Layout

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20


class BlobInfo(msgspec.Struct, frozen=True):
    """A stored blob: its digest, its size, and whether this write added it to the store."""

    digest: str
    size: int
    created: bool


class BlobWriter:
    """Writes one blob to a temp file in ``blobs/``, hashing as it goes.

    Use as a context manager: leaving it without :meth:`commit` (or on an exception) deletes the
    temp file, so nothing is left behind.
    """

    def __init__(self, blobs_dir: Path, expected_digest: str | None = None, max_size: int | None = None) -> None:
        self._expected = parse_digest(expected_digest) if expected_digest is not None else None
        self._max_size = max_size
        self._blobs_dir = blobs_dir
        ensure_dir(blobs_dir)
        fd, temp = tempfile.mkstemp(dir=blobs_dir, prefix=TEMP_PREFIX)
        self._file = os.fdopen(fd, "wb")
        self._temp = Path(temp)
        self._hash = hashlib.sha256()
        self._finished = False
        self.size = 0

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()

    def write(self, data: bytes) -> None:
        """Append ``data``; raises :class:`BlobTooLargeError` (and discards the blob) past ``max_size``."""
        if self._finished:
            raise ValueError("blob writer is closed")
        if self._max_size is not None and self.size + len(data) > self._max_size:
            self.abort()
            raise BlobTooLargeError(self._max_size)
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self) -> BlobInfo:
        """Flush, verify the digest, and move the blob under its final name.

        Raises :class:`DigestMismatchError` (and discards the blob) if an expected digest was given
        and the content hashes differently. If a blob of that digest and size already exists the
        temp file is dropped, ``created`` is ``False`` and the existing blob's mtime is refreshed so
        that a concurrent prune treats it as new.
        """
        if self._finished:
            raise ValueError("blob writer is closed")
        self._file.flush()
        os.fchmod(self._file.fileno(), FILE_MODE)
        os.fsync(self._file.fileno())
        self._file.close()
        digest = "sha256:" + self._hash.hexdigest()
        if self._expected is not None and digest != self._expected:
            self.abort()
            raise DigestMismatchError(self._expected, digest)
        final = self._blobs_dir / blob_filename(digest)
        if _is_file_of_size(final, self.size):
            self.abort()
            _touch(final)
            return BlobInfo(digest=digest, size=self.size, created=False)
        os.replace(self._temp, final)
        self._finished = True
        fsync_dir(self._blobs_dir)
        return BlobInfo(digest=digest, size=self.size, created=True)

    def abort(self) -> None:
        """Discard the blob being written (a no-op once committed or aborted)."""
        if self._finished:
            return
        self._finished = True
        self._file.close()
        self._temp.unlink(missing_ok=True)


class BlobStore:
    """The ``blobs/`` directory of a store."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def path(self, digest: str) -> Path:
        """The file of blob ``digest`` (which may not exist)."""
        return self.layout.blob_path(digest)

    def exists(self, digest: str) -> bool:
        """Whether a regular file is stored under ``digest`` (content not checked)."""
        return _is_file_of_size(self.path(digest), None)

    def writer(self, expected_digest: str | None = None, max_size: int | None = None) -> BlobWriter:
        """A :class:`BlobWriter` for a new blob."""
        return BlobWriter(self.layout.blobs_dir, expected_digest, max_size)

    def put_bytes(self, data: bytes) -> BlobInfo:
        """Store ``data`` unless a blob with its digest is already there."""
        digest = sha256_digest(data)
        if _is_file_of_size(self.path(digest), len(data)):
            _touch(self.path(digest))
            return BlobInfo(digest=digest, size=len(data), created=False)
        with self.writer(digest) as writer:
            writer.write(data)
            return writer.commit()

    def put_file(self, source: Path) -> BlobInfo:
        """Copy the file ``source`` into the store in chunks, hashing as it goes."""
        with open(source, "rb") as f, self.writer() as writer:
            while chunk := f.read(CHUNK_SIZE):
                writer.write(chunk)
            return writer.commit()

    def verify(self, digest: str) -> bool:
        """Whether blob ``digest`` exists and its content hashes to ``digest``."""
        try:
            fd = os.open(self.path(digest), os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return False
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            actual = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
        if actual != parse_digest(digest):
            log.warning("blob %s is corrupt: its content hashes to %s", parse_digest(digest), actual)
            return False
        return True

    def read(self, digest: str, max_size: int) -> bytes:
        """The content of a small blob; raises :class:`BlobNotFoundError` or :class:`BlobTooLargeError`."""
        try:
            data, _ = read_bounded(self.path(digest), max_size)
        except FileNotFoundError:
            raise BlobNotFoundError(parse_digest(digest)) from None
        if len(data) > max_size:
            raise BlobTooLargeError(max_size)
        return data

    def remove(self, digest: str) -> bool:
        """Delete blob ``digest``; ``False`` if it was not there."""
        return remove_durably(self.path(digest))

    def entries(self) -> Iterator[os.DirEntry[str]]:
        """Every entry of ``blobs/`` (nothing if the directory does not exist yet)."""
        try:
            with os.scandir(self.layout.blobs_dir) as it:
                yield from it
        except FileNotFoundError:
            return


def _is_file_of_size(path: Path, size: int | None) -> bool:
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and (size is None or info.st_size == size)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except FileNotFoundError:
        return
