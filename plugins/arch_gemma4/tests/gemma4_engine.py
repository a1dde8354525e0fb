"""The fixture's chat prompts through the runner's engine with the converted projector.

Run as a script (a bad projector can abort the whole process inside llama.cpp):
``python gemma4_engine.py MODEL.gguf MMPROJ.gguf FIXTURE_DIR OUT.json``. The media go the way a
request's do (base64 -> :func:`ollama_core.media.collect_media` -> ``Generate.media``), and the
prompts run one after another in one two-slot engine: audio, image, image again. For each it
writes the last-position logits and the prompt metrics.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from ollama_core.media import collect_media
from ollama_core.runner.engine import Engine
from ollama_core.runner.protocol import Done, FrameDecoder, FromRunner, Generate, Load, Options

ORDER = ("audio", "image", "image")


def run(model: Path, projector: Path, fixture: Path) -> list[dict[str, Any]]:
    """Logits and metrics of each prompt in :data:`ORDER`."""
    reference = json.loads((fixture / "reference.json").read_text(encoding="utf-8"))
    cases = {case["modality"]: case for case in reference["prompts"]}
    engine = Engine(Load(model_path=str(model), projector_path=str(projector), num_ctx=256, num_parallel=2,
                         num_thread=1))
    decoder = FrameDecoder(FromRunner)
    results = []
    try:
        for modality in ORDER:
            case = cases[modality]
            data = (fixture / reference[modality]["file"]).read_bytes()
            media = collect_media([{"images": [base64.b64encode(data).decode()]}])
            engine._submit(Generate(prompt=case["mtmd_prompt"], media=media, options=Options(temperature=0),
                                    num_predict=1))
            while engine._active or engine._waiting:
                engine._step()
            frames = decoder.feed(b"".join(engine._out))
            engine._out.clear()
            done = frames[-1]
            assert isinstance(done, Done), frames
            logits = llama_cpp.llama_get_logits_ith(engine.ctx, -1)
            results.append({
                "modality": modality,
                "last_logits": np.ctypeslib.as_array(logits, shape=(engine.n_vocab,)).tolist(),
                "prompt_eval_count": done.metrics.prompt_eval_count,
                "prompt_cached": done.metrics.prompt_cached,
                "tokens": done.tokens,
            })
    finally:
        engine.close()
    return results


if __name__ == "__main__":
    model_path, projector_path, fixture_dir, out = (Path(arg) for arg in sys.argv[1:5])
    out.write_text(json.dumps(run(model_path, projector_path, fixture_dir)), encoding="utf-8")
