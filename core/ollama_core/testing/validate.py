"""Checks that a plugin's hook implementations match the hook specs and return the right types."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ollama_core import descriptors, hookspecs

_RETURNS: dict[str, type] = {
    "ollama_architectures": descriptors.Architecture,
    "ollama_converters": descriptors.ConverterSpec,
    "ollama_tokenizers": descriptors.TokenizerSpec,
    "ollama_reference_models": descriptors.ReferenceSpec,
    "ollama_renderers": descriptors.RendererSpec,
    "ollama_parsers": descriptors.ParserSpec,
    "ollama_backends": descriptors.BackendSpec,
    "ollama_api_surfaces": descriptors.ApiSurface,
}


class PluginProblems(AssertionError):
    """Raised by :func:`assert_valid_plugin`; ``problems`` lists every mismatch found."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("plugin does not match the hook specs:\n  " + "\n  ".join(problems))
        self.problems = list(problems)


def _spec_args(name: str) -> list[str] | None:
    spec = getattr(hookspecs, name, None)
    if spec is None or not hasattr(spec, hookspecs.PROJECT_NAME + "_spec"):
        return None
    return list(inspect.signature(spec).parameters)


def validate_plugin(plugin: object, *, call_hooks: bool = True) -> list[str]:
    """Every way ``plugin`` fails to match the specs; an empty list means it is valid.

    Flags: ``ollama_*`` functions naming no hook, functions with a hook's name but no
    ``@hookimpl``, arguments a spec does not offer, and (with ``call_hooks``) hooks that raise
    or return something other than a sequence of the expected descriptor type.
    """
    problems: list[str] = []
    marker = hookspecs.PROJECT_NAME + "_impl"
    for attr in sorted(dir(plugin)):
        if not attr.startswith(hookspecs.PROJECT_NAME + "_"):
            continue
        func = getattr(plugin, attr)
        if not callable(func):
            continue
        spec_args = _spec_args(attr)
        if spec_args is None:
            problems.append(f"{attr}: no such hook")
            continue
        if not hasattr(func, marker):
            problems.append(f"{attr}: not decorated with @hookimpl, so it would never be called")
            continue
        extra = [a for a in inspect.signature(func).parameters if a not in spec_args]
        if extra:
            problems.append(f"{attr}: unknown argument(s) {', '.join(extra)}; the spec offers {spec_args or 'none'}")
            continue
        if call_hooks:
            problems.extend(_check_result(attr, func))
    return problems


def _check_result(name: str, func: Any) -> list[str]:
    try:
        result = func()
    except Exception as exc:  # noqa: BLE001 - reported as a problem
        return [f"{name}: raised {type(exc).__name__}: {exc}"]
    if result is None:
        return []
    expected = _RETURNS.get(name)
    if isinstance(result, (str, bytes)) or not isinstance(result, Sequence):
        return [f"{name}: must return a sequence of {expected.__name__ if expected else 'descriptors'}"]
    if expected is None:
        return []
    return [
        f"{name}: item {i} is {type(item).__name__}, expected {expected.__name__}"
        for i, item in enumerate(result)
        if not isinstance(item, expected)
    ]


def assert_valid_plugin(plugin: object, *, call_hooks: bool = True) -> None:
    """Raise :class:`PluginProblems` listing every mismatch of ``plugin`` against the specs."""
    problems = validate_plugin(plugin, call_hooks=call_hooks)
    if problems:
        raise PluginProblems(problems)
