"""Where things live under the store root: ``blobs/sha256-<hex>`` and ``manifests/<host>/<ns>/<model>/<tag>``."""

from __future__ import annotations

from pathlib import Path

from ollama_core.digests import blob_filename
from ollama_core.names import ModelName

TEMP_PREFIX = ".tmp-"
"""File-name prefix of files being written; prune removes stale ones."""


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is the file name of an unfinished write."""
    return name.startswith(TEMP_PREFIX)


class Layout:
    """Paths inside one store root, built only from validated digests and names."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs"
        self.manifests_dir = root / "manifests"

    def blob_path(self, digest: str) -> Path:
        """The file of blob ``digest``; raises ``InvalidDigestError`` for a malformed digest."""
        return self.blobs_dir / blob_filename(digest)

    def manifest_path(self, name: ModelName) -> Path:
        """The manifest file of ``name``; the parts are re-validated before they become a path."""
        host, namespace, model, tag = ModelName(*name.parts()).parts()
        return self.manifests_dir / host / namespace / model / tag
