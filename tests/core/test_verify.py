"""``ollama create --verify``'s check, through the installed plugins' converters and reference passes.

A faithful conversion agrees on every probe. A conversion broken in one layer (its feed-forward
weights negated in the GGUF after converting) fails, and the report names the first intermediate
state that differs: the one right after the broken layer, not an earlier one.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from ollama_core.errors import RequestError
from ollama_core.plugins import build_registries, create_plugin_manager
from ollama_core.progress import Progress
from ollama_core.verify import MIN_COSINE, verify_conversion

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
CASES = {
    "gemma4-a": ("ollama_arch_gemma4.convert", "Gemma4Converter", ["Gemma4ForCausalLM"], "l_out-2"),
    "modernbert-a": ("ollama_arch_modernbert.convert", "ModernBertConverter", ["ModernBertModel"], "ffn_inp-3"),
}
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="reference fixtures are not beside the checkout")


def _convert(fixture: str, out: Path) -> Path:
    module_name, class_name, _, _ = CASES[fixture]
    module = pytest.importorskip(module_name)
    converter = getattr(module, class_name)()
    return converter.convert(FIXTURES / fixture, out, file_type="F32", progress=lambda *a, **k: None).model_path


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_faithful_conversion_passes(fixture: str, tmp_path: Path) -> None:
    model = _convert(fixture, tmp_path)
    lines: list[str] = []
    results = verify_conversion(build_registries(create_plugin_manager()), CASES[fixture][2], FIXTURES / fixture,
                                model, lambda p: lines.append(p.status))
    assert len(results) == 4 and all(r.cosine >= 0.9999 for r in results), results
    assert any(r.tokens > 100 for r in results), "a probe longer than the sliding window"
    assert sum(line.startswith("probe ") for line in lines) == 4
    assert all(not r.layers for r in results), "layers are compared only when a probe differs"


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_broken_layer_is_located(fixture: str, tmp_path: Path) -> None:
    model = _convert(fixture, tmp_path)
    reader = gguf.GGUFReader(model, "r+")
    tensor = next(t for t in reader.tensors if t.name == "blk.2.ffn_down.weight")
    tensor.data[...] = -tensor.data
    reader.data.flush()
    del reader
    lines: list[Progress] = []
    with pytest.raises(RequestError) as failed:
        verify_conversion(build_registries(create_plugin_manager()), CASES[fixture][2], FIXTURES / fixture, model,
                          lines.append)
    first = CASES[fixture][3]
    assert failed.value.status == 400 and f"first differing state: {first}" in failed.value.message
    reported = [p.status.split()[0].rstrip(":") for p in lines if p.status.startswith("  ")]
    assert first in reported, "per-layer similarities are reported for the differing probe"
    earlier = [p.status for p in lines if p.status.startswith("  ") and float(p.status.rsplit(" ", 1)[1]) < MIN_COSINE]
    assert earlier[0].split()[0].rstrip(":") == first
