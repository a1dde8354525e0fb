#!/usr/bin/env bash
# Create .venv and install ollama-core, every plugin under plugins/ and the test tools, all editable.
# llama-cpp-python is built from source once and its wheel kept in a cache outside the checkout
# (OLLAMA_WHEEL_CACHE, default ~/.cache/ollama-core/wheels), so later installs take seconds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
wheels="${OLLAMA_WHEEL_CACHE:-$HOME/.cache/ollama-core/wheels}"
llama="llama-cpp-python==0.3.36"

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip wheel hatchling editables

mkdir -p "$wheels"
if ! compgen -G "$wheels/llama_cpp_python-0.3.36-*.whl" >/dev/null; then
    echo "building $llama from source (a few minutes, once)" >&2
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "${pip[@]}" wheel --quiet --no-deps --no-binary llama-cpp-python "$llama" -w "$wheels"
fi

editables=(-e ".[test]")
for plugin in plugins/*/; do
    [[ -f "$plugin/pyproject.toml" ]] && editables+=(-e "${plugin%/}[test]")
done
"${pip[@]}" install --quiet --find-links "$wheels" "$llama" "${editables[@]}"
echo "installed into $root/.venv" >&2
