"""``python -m ollama_core.cli``: the same as the ``ollama`` command."""

from ollama_core.cli import main

main()
