"""OpenAI-compatible audio endpoints (``POST /v1/audio/transcriptions``), mounted when a plugin offers audio input."""
