"""Apple Silicon GPUs for ollama-core: unified-memory discovery and a check of the llama-cpp-python build."""
