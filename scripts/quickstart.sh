#!/usr/bin/env bash
# The main job on a fresh machine: start a server on a private port with a private store, create
# the default model (SmolLM2-135M-Instruct Q4_1) from its GGUF, show it and ask it a question.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ollama="$root/.venv/bin/ollama"
gguf="$("$root/scripts/fetch-default-model.sh")"
work="$(mktemp -d)"
export OLLAMA_HOST="127.0.0.1:${OLLAMA_QUICKSTART_PORT:-11500}"
export OLLAMA_MODELS="${OLLAMA_MODELS:-$work/models}"
"$ollama" serve >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://$OLLAMA_HOST/" && break
    sleep 0.2
done
printf 'FROM %s\n' "$gguf" >"$work/Modelfile"
"$ollama" create smollm2 -f "$work/Modelfile"
"$ollama" list
"$ollama" show smollm2
"$ollama" run smollm2 "Why is the sky blue?"
