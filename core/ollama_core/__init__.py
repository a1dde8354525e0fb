"""ollama-core: a plugin-based, Ollama-compatible model server."""

__version__ = "0.1.0"
