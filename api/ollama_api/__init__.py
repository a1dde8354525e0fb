"""The HTTP API of ollama-core: a Litestar app composed from API-surface plugins."""
