"""Resumable, parallel download of one blob, in Ollama's partial-file format.

Data is written to ``blobs/sha256-<hex>-partial`` (sized up front) by parallel ranged GETs; each
part's progress is kept in ``blobs/sha256-<hex>-partial-<N>`` as ``{"N","Offset","Size","Completed"}``
JSON, so an interrupted download continues where it stopped. An exclusive ``flock`` on the partial
file lets one downloader at a time work on a blob, across threads and processes. The blob enters
the store (an atomic rename) only after its SHA-256 matches the digest; on a mismatch the partial
data is deleted. Leftover partial files are not blob names, so ``Store.prune`` removes them.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from types import TracebackType

import httpx
import msgspec

from ollama_core.digests import digest_hex, parse_digest
from ollama_core.errors import RequestError
from ollama_core.registry.bodies import declared_length, iter_body
from ollama_core.registry.client import RegistryClient
from ollama_core.registry.errors import TransientError, UpstreamError
from ollama_core.registry.reporter import INTERVAL
from ollama_core.store import Store

log = logging.getLogger(__name__)

PARTS = 16
"""Most parts a blob is split into, and most parts fetched at once."""
MIN_PART_SIZE = 16 << 20
MAX_PART_SIZE = 1000 << 20
SAVE_INTERVAL = 1.0
"""Seconds between two saves of a running part's state."""
MAX_STATE_FILES = 4096
MAX_STATE_SIZE = 4096
MAX_BACKOFF = 30.0

_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class PartState(msgspec.Struct):
    """One part of a download, as saved in ``<blob>-partial-<N>`` (Ollama's field names)."""

    N: int
    Offset: int
    Size: int
    Completed: int


def plan_parts(total: int) -> list[PartState]:
    """Split ``total`` bytes into at most about ``PARTS`` parts of 16 MiB to 1000 MB each."""
    size = min(max(total // PARTS, MIN_PART_SIZE), MAX_PART_SIZE)
    return [
        PartState(N=n, Offset=offset, Size=min(size, total - offset), Completed=0)
        for n, offset in enumerate(range(0, total, size))
    ]


class _Stopped(Exception):
    """A part worker gave up because the download is being stopped."""


class BlobDownload:
    """Downloads blob ``digest`` of ``size`` bytes from the client's repository into ``store``.

    Use as a context manager: :meth:`acquire`, :meth:`fetch`, :meth:`verify`, :meth:`commit`.
    Leaving it releases the lock and keeps any partial data for a later resume.
    """

    def __init__(self, store: Store, client: RegistryClient, digest: str, size: int) -> None:
        self.digest = parse_digest(digest)
        self.size = size
        self._store = store
        self._client = client
        self._policy = client.policy
        blob = store.blob_path(self.digest)
        self._partial = blob.with_name(blob.name + "-partial")
        self._state_re = re.compile(re.escape(self._partial.name) + r"-(\d+)")
        self._short = digest_hex(self.digest)[:12]
        self._what = f"pull blob {self._short}"
        self._fd: int | None = None
        self._parts: list[PartState] = []
        self._stop = threading.Event()

    def __enter__(self) -> BlobDownload:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def completed(self) -> int:
        """Bytes downloaded so far, including those kept from an earlier attempt."""
        return sum(part.Completed for part in self._parts)

    def acquire(self, waiting: Callable[[], None]) -> bool:
        """Lock the partial file (calling ``waiting`` while another downloader holds it).

        Returns ``False`` if the blob is in the store already, so there is nothing to download.
        """
        self._partial.parent.mkdir(parents=True, exist_ok=True)
        while not self._store.has_blob(self.digest):
            fd = os.open(self._partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        waiting()
                        time.sleep(INTERVAL)
                if _same_file(fd, self._partial):
                    self._fd, fd = fd, -1
                    if self._store.has_blob(self.digest):
                        self.discard()
                        return False
                    return True
            finally:
                if fd >= 0:
                    os.close(fd)
        return False

    def fetch(self, report: Callable[[int], None]) -> None:
        """Download what is missing, calling ``report(completed)`` about every 60 ms.

        If ``report`` raises, the parts stop, their progress is saved and the exception propagates.
        """
        self._check_size()
        self._parts = self._load_parts() or self._new_parts()
        report(self.completed)
        missing = [part for part in self._parts if part.Completed < part.Size]
        if not missing:
            return
        self._check_space()
        url = self._locate()
        log.info("downloading %s in %d part(s)", self._short, len(missing))
        with ThreadPoolExecutor(max_workers=min(PARTS, len(missing)), thread_name_prefix="pull-part") as pool:
            futures = [pool.submit(self._fetch_part, url, part) for part in missing]
            try:
                while True:
                    done, pending = wait(futures, timeout=INTERVAL, return_when=FIRST_EXCEPTION)
                    report(self.completed)
                    for future in done:
                        future.result()
                    if not pending:
                        return
            except BaseException:
                self._stop.set()
                wait(futures)
                raise

    def verify(self) -> None:
        """Check the SHA-256 of the downloaded data; on a mismatch delete it and raise."""
        fd = self._locked_fd()
        sha = hashlib.sha256()
        position = 0
        while chunk := os.pread(fd, 1 << 20, position):
            sha.update(chunk)
            position += len(chunk)
        actual = "sha256:" + sha.hexdigest()
        if actual != self.digest or position != self.size:
            self.discard()
            raise UpstreamError(f"digest mismatch, file must be downloaded again: want {self.digest}, got {actual}")

    def commit(self) -> None:
        """Move the verified data into the store under its digest and drop the part states."""
        fd = self._locked_fd()
        os.fsync(fd)
        target = self._store.blob_path(self.digest)
        os.replace(self._partial, target)
        os.utime(target)
        _fsync_dir(target.parent)
        self._remove_states()

    def discard(self) -> None:
        """Delete the partial data and its part states (the lock must be held)."""
        self._partial.unlink(missing_ok=True)
        self._remove_states()
        self._parts = []

    def close(self) -> None:
        """Release the lock (progress already saved stays for a later resume)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _locked_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("download not acquired")
        return self._fd

    def _check_size(self) -> None:
        response, _ = self._client.follow("HEAD", self._client.blob_url(self.digest), what=self._what, storage=True)
        try:
            if response.status_code != 200:
                raise self._client.error(response, self._what)
            length = declared_length(response)
        finally:
            response.close()
        if length is not None and length != self.size:
            raise UpstreamError(f"{self._what}: registry reports {length} bytes, manifest says {self.size}")

    def _check_space(self) -> None:
        needed = self.size - self.completed
        free = shutil.disk_usage(self._partial.parent).free
        if needed > free:
            raise RequestError(507, f"{self._what}: not enough disk space ({needed} bytes needed, {free} free)")

    def _locate(self) -> httpx.URL:
        """The URL to fetch parts from: the registry's, or the blob storage it redirects to."""
        response, url = self._client.follow(
            "GET", self._client.blob_url(self.digest), what=self._what, headers={"Range": "bytes=0-0"}, storage=True
        )
        try:
            if response.status_code not in (200, 206):
                raise self._client.error(response, self._what)
        finally:
            response.close()
        return url

    def _fetch_part(self, url: httpx.URL, part: PartState) -> None:
        attempt = 0
        while True:
            try:
                self._fetch_range(url, part)
                return
            except TransientError as exc:
                if self._stop.is_set():
                    raise _Stopped() from None
                if attempt >= self._policy.retries:
                    raise
                attempt += 1
                delay = min(self._policy.retry_backoff * 2 ** (attempt - 1), MAX_BACKOFF)
                log.info(
                    "%s part %d attempt %d failed: %s; retrying in %.1f s", self._short, part.N, attempt, exc, delay
                )
                if self._stop.wait(delay):
                    raise _Stopped() from None

    def _fetch_range(self, url: httpx.URL, part: PartState) -> None:
        start, end = part.Offset + part.Completed, part.Offset + part.Size - 1
        if start > end:
            return
        headers = {"Range": f"bytes={start}-{end}"}
        if self._client.is_registry(url):
            response = self._client.send("GET", url, what=self._what, headers=headers)
        else:
            response = self._client.send_storage("GET", url, what=self._what, headers=headers)
        fd = self._locked_fd()
        try:
            self._check_range(response, start)
            position, saved_at = start, time.monotonic()
            for chunk in iter_body(response, self._what):
                if self._stop.is_set():
                    raise _Stopped()
                piece = memoryview(chunk)[: end + 1 - position]
                os.pwrite(fd, piece, position)
                position += len(piece)
                part.Completed = position - part.Offset
                if position > end:
                    break
                if time.monotonic() - saved_at >= SAVE_INTERVAL:
                    self._save(part)
                    saved_at = time.monotonic()
            if position <= end:
                received, wanted = position - start, end + 1 - start
                raise TransientError(f"{self._what}: connection closed after {received} of {wanted} bytes")
        finally:
            response.close()
            self._save(part)

    def _check_range(self, response: httpx.Response, start: int) -> None:
        status = response.status_code
        if status == 206:
            match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("content-range", "").strip())
            if match is None or int(match.group(1)) != start:
                raise UpstreamError(f"{self._what}: registry answered a different byte range")
            if match.group(3) != "*" and int(match.group(3)) != self.size:
                raise UpstreamError(f"{self._what}: registry reports a different blob size")
            return
        if status == 200 and start == 0:
            return
        if status == 200:
            raise UpstreamError(f"{self._what}: registry ignored the range request")
        error = self._client.error(response, self._what)
        if status in _RETRY_STATUSES:
            raise TransientError(error.message, status=error.status)
        raise error

    def _state_path(self, n: int) -> Path:
        return self._partial.with_name(f"{self._partial.name}-{n}")

    def _state_files(self) -> list[Path]:
        try:
            names = os.listdir(self._partial.parent)
        except FileNotFoundError:
            return []
        return [self._partial.parent / name for name in names if self._state_re.fullmatch(name)]

    def _load_parts(self) -> list[PartState] | None:
        """The saved parts if they describe this blob consistently, else ``None``."""
        files = self._state_files()
        if not files or len(files) > MAX_STATE_FILES or os.fstat(self._locked_fd()).st_size != self.size:
            return None
        parts: list[PartState] = []
        for path in files:
            try:
                with open(path, "rb") as f:
                    parts.append(msgspec.json.decode(f.read(MAX_STATE_SIZE), type=PartState))
            except (OSError, msgspec.DecodeError):
                return None
        parts.sort(key=lambda part: part.N)
        offset = 0
        for n, part in enumerate(parts):
            if (part.N, part.Offset) != (n, offset) or part.Size <= 0 or not 0 <= part.Completed <= part.Size:
                return None
            offset += part.Size
        if offset != self.size:
            return None
        kept = sum(part.Completed for part in parts)
        log.info("resuming %s: %d of %d bytes already downloaded", self._short, kept, self.size)
        return parts

    def _new_parts(self) -> list[PartState]:
        self._remove_states()
        fd = self._locked_fd()
        os.ftruncate(fd, 0)
        os.ftruncate(fd, self.size)
        parts = plan_parts(self.size)
        for part in parts:
            self._save(part)
        return parts

    def _save(self, part: PartState) -> None:
        path = self._state_path(part.N)
        temp = path.with_name(path.name + ".tmp")
        temp.write_bytes(msgspec.json.encode(part) + b"\n")
        os.replace(temp, path)

    def _remove_states(self) -> None:
        for path in self._state_files():
            path.unlink(missing_ok=True)


def _same_file(fd: int, path: Path) -> bool:
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (info.st_dev, info.st_ino) == (own.st_dev, own.st_ino)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
