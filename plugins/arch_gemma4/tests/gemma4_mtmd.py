"""Encoding images and audio with a converted Gemma 4 projector through llama.cpp's mtmd.

Run as a script (a bad projector can abort the whole process inside llama.cpp):
``python gemma4_mtmd.py MODEL.gguf MMPROJ.gguf FIXTURE_DIR OUT.json``. It writes the projected
embeddings of ``audio.wav``, ``image.png`` and ``image_small.png`` and, for each chat prompt of
``reference.json``, the token ids as mtmd lays them out and the last-position logits. Everything
about the image budget is read from the projector GGUF, as a runner would.
"""

from __future__ import annotations

import ctypes
import json
import math
import sys
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from gemma4_llama import LlamaRunner


def hf_image_size(width: int, height: int, patch: int, pooling: int, max_soft_tokens: int) -> tuple[int, int]:
    """The size transformers' Gemma 4 image processor resizes an image to (width, height)."""
    max_patches = max_soft_tokens * pooling**2
    factor = math.sqrt(max_patches * patch**2 / (height * width))
    side = pooling * patch
    target_h = math.floor(factor * height / side) * side
    target_w = math.floor(factor * width / side) * side
    longest = (max_patches // pooling**2) * side
    if target_h == 0:
        target_h, target_w = side, min(math.floor(width / height) * side, longest)
    elif target_w == 0:
        target_w, target_h = side, min(math.floor(height / width) * side, longest)
    return target_w, target_h


@dataclass(frozen=True)
class ImageBudget:
    """How the projector cuts images: patch size, pooling kernel and the most soft tokens per image."""

    patch_size: int
    pooling: int
    max_tokens: int

    @classmethod
    def of(cls, projector: Path) -> ImageBudget:
        """The budget recorded in a projector GGUF."""
        import gguf

        fields = gguf.GGUFReader(projector).fields
        return cls(
            patch_size=int(fields["clip.vision.patch_size"].contents()),
            pooling=int(fields["clip.vision.projector.scale_factor"].contents()),
            max_tokens=int(fields["clip.vision.image_max_tokens"].contents()),
        )


def load_image(path: Path, budget: ImageBudget) -> np.ndarray:
    """RGB pixels (height, width, 3) resized as transformers' PIL image processor does."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        size = hf_image_size(rgb.width, rgb.height, budget.patch_size, budget.pooling, budget.max_tokens)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8)


def load_wav(path: Path) -> np.ndarray:
    """Mono PCM16 samples as float32 in [-1, 1)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono PCM16")
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


class Media:
    """An mtmd context over a loaded text model."""

    def __init__(self, runner: LlamaRunner, projector: Path, max_soft_tokens: int) -> None:
        from llama_cpp import mtmd_cpp

        self.mtmd = mtmd_cpp
        self.runner = runner
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = 1
        params.print_timings = False
        params.image_min_tokens = 1
        params.image_max_tokens = max_soft_tokens
        self.ctx = mtmd_cpp.mtmd_init_from_file(str(projector).encode(), runner.llama.model, params)
        if not self.ctx:
            raise RuntimeError(f"mtmd could not load {projector}")
        self.n_embd = runner.llama.n_embd()

    def image(self, pixels: np.ndarray) -> Any:
        """A bitmap of RGB pixels."""
        height, width, _ = pixels.shape
        data = np.ascontiguousarray(pixels).ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        return self.mtmd.mtmd_bitmap_init(width, height, data)

    def audio(self, samples: np.ndarray) -> Any:
        """A bitmap of 16 kHz mono samples."""
        data = np.ascontiguousarray(samples, dtype=np.float32)
        return self.mtmd.mtmd_bitmap_init_from_audio(len(data), data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))

    def tokenize(self, text: str, bitmap: Any, *, add_special: bool) -> Any:
        """Chunks of ``text`` with the media marker replaced by ``bitmap``."""
        mtmd = self.mtmd
        chunks = mtmd.mtmd_input_chunks_init()
        encoded = text.encode("utf-8")
        prompt = mtmd.mtmd_input_text(encoded, len(encoded), add_special, True)
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        if mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(prompt), bitmaps, 1) != 0:
            raise RuntimeError("mtmd_tokenize failed")
        return chunks

    def chunks(self, chunks: Any) -> list[Any]:
        """The chunk handles of ``chunks``."""
        return [self.mtmd.mtmd_input_chunks_get(chunks, i) for i in range(self.mtmd.mtmd_input_chunks_size(chunks))]

    def embeddings(self, bitmap: Any) -> np.ndarray:
        """Projected embeddings of one media bitmap: (tokens, text width)."""
        mtmd = self.mtmd
        chunks = self.tokenize(mtmd.mtmd_default_marker().decode(), bitmap, add_special=False)
        try:
            media = [
                c for c in self.chunks(chunks) if mtmd.mtmd_input_chunk_get_type(c) != mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT
            ]
            if len(media) != 1:
                raise RuntimeError(f"expected one media chunk, got {len(media)}")
            if mtmd.mtmd_encode_chunk(self.ctx, media[0]) != 0:
                raise RuntimeError("mtmd_encode_chunk failed")
            n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(media[0])
            pointer = mtmd.mtmd_get_output_embd(self.ctx)
            return np.ctypeslib.as_array(pointer, shape=(n_tokens * self.n_embd,)).reshape(n_tokens, self.n_embd).copy()
        finally:
            mtmd.mtmd_input_chunks_free(chunks)

    def prompt(self, text: str, bitmap: Any, media_token: int) -> tuple[list[int], np.ndarray]:
        """Token ids (media positions as ``media_token``) and last-position logits of a chat prompt."""
        import llama_cpp

        mtmd = self.mtmd
        chunks = self.tokenize(text, bitmap, add_special=True)
        try:
            ids: list[int] = []
            for chunk in self.chunks(chunks):
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    ids.extend(tokens[i] for i in range(count.value))
                else:
                    ids.extend([media_token] * mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            ctx = self.runner.llama.ctx
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            n_past = llama_cpp.llama_pos(0)
            n_batch = self.runner.llama.n_batch
            if mtmd.mtmd_helper_eval_chunks(self.ctx, ctx, chunks, 0, 0, n_batch, True, ctypes.byref(n_past)) != 0:
                raise RuntimeError("mtmd_helper_eval_chunks failed")
            if n_past.value != len(ids):
                raise RuntimeError(f"evaluated {n_past.value} positions for {len(ids)} tokens")
            logits = llama_cpp.llama_get_logits_ith(ctx, -1)
            return ids, np.ctypeslib.as_array(logits, shape=(self.runner.llama.n_vocab(),)).astype(np.float64)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)

    def close(self) -> None:
        """Free the mtmd context."""
        self.mtmd.mtmd_free(self.ctx)


def run(model: Path, projector: Path, fixture: Path) -> dict[str, Any]:
    """Everything the parity tests compare, as plain JSON values."""
    reference = json.loads((fixture / "reference.json").read_text(encoding="utf-8"))
    budget = ImageBudget.of(projector)
    runner = LlamaRunner(model)
    media = Media(runner, projector, budget.max_tokens)
    try:
        bitmaps = {
            "audio": media.audio(load_wav(fixture / reference["audio"]["file"])),
            "image": media.image(load_image(fixture / reference["image"]["file"], budget)),
            "image_small": media.image(load_image(fixture / reference["image_small"]["file"], budget)),
        }
        result: dict[str, Any] = {name: media.embeddings(bitmap).tolist() for name, bitmap in bitmaps.items()}
        result["prompts"] = []
        for case in reference["prompts"]:
            token = reference["token_ids"][f"{case['modality']}_token"]
            ids, logits = media.prompt(case["mtmd_prompt"], bitmaps[case["modality"]], token)
            result["prompts"].append({"modality": case["modality"], "ids": ids, "last_logits": logits.tolist()})
        for bitmap in bitmaps.values():
            media.mtmd.mtmd_bitmap_free(bitmap)
        return result
    finally:
        media.close()
        runner.close()


if __name__ == "__main__":
    model_path, projector_path, fixture_dir, out = (Path(arg) for arg in sys.argv[1:5])
    out.write_text(json.dumps(run(model_path, projector_path, fixture_dir)), encoding="utf-8")
