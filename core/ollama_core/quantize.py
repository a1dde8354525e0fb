"""Quantizing an F32/F16/BF16 GGUF with llama.cpp's quantizer, in a child process.

The quantizer runs in its own process (``python -m ollama_core.quantize SRC DST TYPE``) so that an
abort inside llama.cpp is an error for the request, never a crash of the server. Progress is the
size of the output file as it grows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ollama_core.errors import RequestError
from ollama_core.progress import Progress, ProgressSink

QUANTIZATION_TYPES: dict[str, str] = {
    "q4_k_m": "Q4_K_M",
    "q4_k": "Q4_K_M",
    "q4_k_s": "Q4_K_S",
    "q4_0": "Q4_0",
    "q4_1": "Q4_1",
    "q5_k_m": "Q5_K_M",
    "q5_k": "Q5_K_M",
    "q5_k_s": "Q5_K_S",
    "q5_0": "Q5_0",
    "q5_1": "Q5_1",
    "q6_k": "Q6_K",
    "q8_0": "Q8_0",
    "q3_k_m": "Q3_K_M",
    "q3_k_s": "Q3_K_S",
    "q3_k_l": "Q3_K_L",
    "q2_k": "Q2_K",
    "f16": "F16",
    "bf16": "BF16",
}
SOURCE_TYPES = frozenset({"F32", "F16", "BF16"})
PROGRESS_DIGEST = "0000000000000000000"


def quantization_name(requested: str) -> str:
    """The canonical name (``Q4_K_M``) of a requested type, or 400 naming the supported ones."""
    name = QUANTIZATION_TYPES.get(requested.lower())
    if name is None:
        supported = ", ".join(sorted({v for v in QUANTIZATION_TYPES.values()}))
        raise RequestError(400, f"unsupported quantization type {requested!r}; supported: {supported}")
    return name


def quantize(source: Path, destination: Path, source_type: str, target: str, progress: ProgressSink) -> None:
    """Write ``source`` quantized to ``target`` (a canonical name) at ``destination``."""
    if source_type not in SOURCE_TYPES:
        raise RequestError(
            400, f"quantization is only supported for F16, BF16 and F32 models; this model is {source_type}"
        )
    status = f"quantizing {source_type} model to {target}"
    total = source.stat().st_size
    progress(Progress(status, digest=PROGRESS_DIGEST, total=total, completed=0))
    child = subprocess.Popen(
        [sys.executable, "-m", "ollama_core.quantize", str(source), str(destination), target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while child.poll() is None:
        time.sleep(0.25)
        written = destination.stat().st_size if destination.exists() else 0
        progress(Progress(status, digest=PROGRESS_DIGEST, total=total, completed=min(written, total)))
    stderr = child.stderr.read().decode("utf-8", "replace") if child.stderr else ""
    if child.returncode != 0:
        destination.unlink(missing_ok=True)
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        raise RequestError(500, f"quantization failed: {tail[0]}")
    progress(Progress(status, digest=PROGRESS_DIGEST, total=total, completed=total))


def _main(source: str, destination: str, target: str) -> int:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{target}")
    params.nthread = os.cpu_count() or 1
    return int(llama_cpp.llama_model_quantize(source.encode(), destination.encode(), params))


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:4]))
