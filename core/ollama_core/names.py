"""Model names: ``[scheme://][host/][namespace/]model[:tag]`` as Ollama parses and displays them.

Every part must start with ``[A-Za-z0-9_]``; the rest may use ``[A-Za-z0-9_.-]``, except that a
namespace may not contain ``.`` and a host may also contain ``:`` (for a port). Hosts are 1-350
characters, every other part 1-80. A valid part can never be ``.``, ``..`` or contain ``/``, so the
parts are safe to use as path components.
"""

from __future__ import annotations

import re

import msgspec

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"
SCHEMES = frozenset({"http", "https"})

_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_MODEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_TAG_RE = _MODEL_RE


class InvalidNameError(ValueError):
    """A string that is not a valid model name."""

    def __init__(self, message: str = "invalid model name") -> None:
        super().__init__(message)


class ModelName(msgspec.Struct, frozen=True):
    """A fully qualified model name; construction validates every part."""

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = DEFAULT_SCHEME

    def __post_init__(self) -> None:
        if not (
            _HOST_RE.fullmatch(self.host)
            and _NAMESPACE_RE.fullmatch(self.namespace)
            and _MODEL_RE.fullmatch(self.model)
            and _TAG_RE.fullmatch(self.tag)
            and self.scheme in SCHEMES
        ):
            raise InvalidNameError()

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse ``text``, filling missing parts with the defaults; raises :class:`InvalidNameError`."""
        if not isinstance(text, str) or "@" in text:
            raise InvalidNameError()
        rest, tag = text, DEFAULT_TAG
        if rest.rfind(":") > rest.rfind("/"):
            rest, tag = _cut_last(rest, ":")
        if "/" not in rest:
            return cls(host=DEFAULT_HOST, namespace=DEFAULT_NAMESPACE, model=rest, tag=tag)
        rest, model = _cut_last(rest, "/")
        if "/" not in rest:
            return cls(host=DEFAULT_HOST, namespace=rest, model=model, tag=tag)
        rest, namespace = _cut_last(rest, "/")
        scheme, sep, host = rest.partition("://")
        if not sep:
            return cls(host=rest, namespace=namespace, model=model, tag=tag)
        return cls(host=host, namespace=namespace, model=model, tag=tag, scheme=scheme.lower())

    def display(self) -> str:
        """The shortest form, as ``/api/tags`` shows it: ``m:tag``, ``ns/m:tag`` or ``host/ns/m:tag``."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def full(self) -> str:
        """The fully qualified form ``host/namespace/model:tag`` (without the scheme)."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def parts(self) -> tuple[str, str, str, str]:
        """``(host, namespace, model, tag)``: the manifest path components, in order."""
        return (self.host, self.namespace, self.model, self.tag)

    def casefold_key(self) -> tuple[str, str, str, str]:
        """The parts lower-cased, for matching names regardless of case."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def __str__(self) -> str:
        return self.full()


def is_valid_name(text: str) -> bool:
    """Whether ``text`` parses as a model name."""
    try:
        ModelName.parse(text)
    except InvalidNameError:
        return False
    return True


def _cut_last(text: str, sep: str) -> tuple[str, str]:
    before, _, after = text.rpartition(sep)
    if not before or not after:
        raise InvalidNameError()
    return before, after
