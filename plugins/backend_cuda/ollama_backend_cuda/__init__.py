"""NVIDIA GPUs for ollama-core: discovery through NVML and a check of the llama-cpp-python build."""
