"""Paths of the shared reference checkpoints and a one-call conversion helper."""

from __future__ import annotations

from pathlib import Path

FIXTURE = Path("/work/shared/fixtures/gemma4-a")
MULTIMODAL_FIXTURE = Path("/work/shared/fixtures/gemma4mm-a")


def _quiet(status: str, *, completed: int | None = None, total: int | None = None) -> None:
    """A progress callback that ignores progress."""


def convert(source: Path, output_dir: Path, file_type: str = "F32") -> Path:
    """Convert ``source`` with the plugin's converter; the GGUF path."""
    from ollama_arch_gemma4.convert import Gemma4Converter

    return Gemma4Converter().convert(source, output_dir, file_type=file_type, progress=_quiet).model_path
