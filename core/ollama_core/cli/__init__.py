"""The ``ollama`` command line: a client of the HTTP API (``serve`` runs the server itself).

Subcommands are imported only when invoked, so ``ollama --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from ollama_core import __version__

_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("ollama_core.cli.serve", "serve"),
    "create": ("ollama_core.cli.create", "create"),
    "run": ("ollama_core.cli.run", "run"),
    "ps": ("ollama_core.cli.run", "ps"),
    "stop": ("ollama_core.cli.run", "stop"),
    "transcribe": ("ollama_core.cli.transcribe", "transcribe"),
    "pull": ("ollama_core.cli.transfer", "pull"),
    "push": ("ollama_core.cli.transfer", "push"),
    "show": ("ollama_core.cli.models", "show"),
    "list": ("ollama_core.cli.models", "list_models"),
    "cp": ("ollama_core.cli.models", "copy"),
    "rm": ("ollama_core.cli.models", "remove"),
    "plugins": ("ollama_core.cli.plugins", "plugins"),
}
_ALIASES = {"ls": "list", "start": "serve"}
_HELP = {
    "serve": "Start the server",
    "create": "Create a model from a Modelfile",
    "run": "Run a model",
    "ps": "List running models",
    "stop": "Stop a running model",
    "transcribe": "Transcribe audio files with an audio-capable model",
    "pull": "Pull a model from a registry",
    "push": "Push a model to a registry",
    "show": "Show information for a model",
    "list": "List models",
    "cp": "Copy a model",
    "rm": "Remove a model",
    "plugins": "List installed plugins, their hooks and load errors",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = _ALIASES.get(cmd_name, cmd_name)
        if name not in _COMMANDS:
            return None
        module_name, attr = _COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Available Commands"):
            formatter.write_dl([(name, _HELP[name]) for name in _COMMANDS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", message="ollama version is %(version)s")
def cli() -> None:
    """Large language model runner."""


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="ollama")
