"""Check a converted GGUF against the numpy reference: probe texts through llama.cpp and through numpy.

llama.cpp runs in a child process (``python -m ollama_arch_modernbert.verify``) so that a
llama.cpp abort cannot take the caller down. The child reads a JSON request on stdin and
writes the token ids and pooled embedding of each text as JSON on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ollama_arch_modernbert.reference import ModernBertReference

DEFAULT_PROBES: tuple[str, ...] = (
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve résumé — 日本語 テキスト and emoji 🚀.",
    " ".join(["Local attention sees a window; global layers see every token."] * 24),
)
"""Short, non-ASCII and long (beyond any sliding window) inputs."""

_CHILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class LlamaEmbedding:
    """What llama.cpp produced for one text: its token ids and pooled embedding."""

    token_ids: tuple[int, ...]
    embedding: tuple[float, ...]


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome: the tokens llama.cpp used and cosine(llama.cpp, reference)."""

    text: str
    token_ids: tuple[int, ...]
    cosine: float


def verify(checkpoint_dir: Path, gguf_path: Path, probes: Sequence[str] = DEFAULT_PROBES) -> list[ProbeResult]:
    """Embed each probe with llama.cpp (GGUF) and the numpy reference (checkpoint); cosine per probe.

    Both sides use llama.cpp's token ids, so this measures the model's numerics; compare token
    ids with the HF tokenizer separately to check the tokenizer.
    """
    llama = llama_embeddings(gguf_path, probes)
    reference = ModernBertReference(checkpoint_dir)
    results: list[ProbeResult] = []
    for text, got in zip(probes, llama, strict=True):
        expected = reference.run(got.token_ids).final
        results.append(ProbeResult(text, got.token_ids, cosine(got.embedding, expected)))
    return results


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two vectors (0.0 when either is zero)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / denominator if denominator else 0.0


def llama_embeddings(gguf_path: Path, texts: Sequence[str], *, timeout: float = _CHILD_TIMEOUT_S) -> list[LlamaEmbedding]:
    """Token ids and pooled embeddings of ``texts`` from llama.cpp, computed in a child process.

    The context is sized so every text fits one micro-batch; pooling is the GGUF's own and the
    vector is L2-normalised when the GGUF says so. Raises ``RuntimeError`` if the child fails.
    """
    request = json.dumps({"model": str(gguf_path), "texts": list(texts)})
    done = subprocess.run(
        [sys.executable, "-m", "ollama_arch_modernbert.verify"],
        input=request,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"llama.cpp embedding process failed ({done.returncode}): {done.stderr[-2000:]}")
    answer = json.loads(done.stdout)
    return [LlamaEmbedding(tuple(item["ids"]), tuple(item["embedding"])) for item in answer["results"]]


def _child_main() -> None:
    """Child process: load the GGUF with llama-cpp-python and embed the texts from stdin."""
    from llama_cpp import Llama

    from ollama_arch_modernbert.convert import NORMALIZE_KEY

    request = json.load(sys.stdin)
    texts: list[str] = request["texts"]
    vocab = Llama(request["model"], vocab_only=True, verbose=False)
    ids = [vocab.tokenize(text.encode("utf-8"), add_bos=True, special=False) for text in texts]
    normalize = vocab.metadata.get(NORMALIZE_KEY) == "true"
    del vocab
    n_tokens = max([len(i) for i in ids] + [1])
    model = Llama(
        request["model"], embedding=True, n_ctx=n_tokens, n_batch=n_tokens, n_ubatch=n_tokens, verbose=False
    )
    results = [{"ids": i, "embedding": model.embed(text, normalize=normalize)} for text, i in zip(texts, ids)]
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    _child_main()
