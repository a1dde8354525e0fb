"""The numpy reference against transformers, and ``verify`` end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ollama_arch_modernbert.reference import ModernBertReference
from ollama_arch_modernbert.verify import DEFAULT_PROBES, cosine, verify


def test_reference_matches_transformers(fixture_dir: Path, reference: dict[str, Any]) -> None:
    model = ModernBertReference(fixture_dir)
    for item in reference["texts"]:
        output = model.run(item["ids"])
        assert cosine(output.final, item["embedding"]) >= 0.99999, item["text"]
        np.testing.assert_allclose(output.final, item["embedding"], rtol=0, atol=1e-4)
        assert [layer.shape for layer in output.layers] == [(len(item["ids"]), 64)] * 6


def test_reference_rejects_bad_ids(fixture_dir: Path) -> None:
    model = ModernBertReference(fixture_dir)
    with pytest.raises(ValueError, match="token ids"):
        model.run([0, 512])
    with pytest.raises(ValueError, match="non-empty"):
        model.run([])


def test_reference_refuses_biased_checkpoints(checkpoint_copy: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="norm_bias"):
        ModernBertReference(checkpoint_copy(config=lambda raw: raw.update(norm_bias=True)))


def test_verify_reports_cosine_per_probe(fixture_dir: Path, converted: Callable[[str], Path]) -> None:
    pytest.importorskip("llama_cpp")
    results = verify(fixture_dir, converted("F32"))
    assert [r.text for r in results] == list(DEFAULT_PROBES)
    assert all(r.token_ids[0] == 508 and r.token_ids[-1] == 509 for r in results)
    assert max(len(r.token_ids) for r in results) > 16
    assert all(r.cosine >= 0.99999 for r in results), results
