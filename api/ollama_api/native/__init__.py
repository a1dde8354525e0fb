"""The native ``/api/*`` surface, Ollama's own API."""
