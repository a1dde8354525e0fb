"""Runtime options (``options`` in requests, ``PARAMETER`` in Modelfiles) as Ollama types them.

Options are merged in layers: Ollama's defaults, then the model's stored parameters, then the
request's ``options``. Unknown names are dropped, values of the wrong JSON type are rejected
with Ollama's messages, and values that would break a runner are rejected by range.
"""

from __future__ import annotations

import logging
import math
import re
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final

import msgspec

log = logging.getLogger(__name__)

Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0.0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class Options(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """Every runtime option; ``None`` means "not set at this layer"."""

    num_ctx: PositiveInt | None = None
    num_batch: PositiveInt | None = None
    num_gpu: Annotated[int, msgspec.Meta(ge=-1)] | None = None
    main_gpu: NonNegativeInt | None = None
    use_mmap: bool | None = None
    num_thread: NonNegativeInt | None = None
    draft_num_predict: NonNegativeInt | None = None
    num_keep: Annotated[int, msgspec.Meta(ge=-1)] | None = None
    seed: int | None = None
    num_predict: Annotated[int, msgspec.Meta(ge=-2)] | None = None
    top_k: NonNegativeInt | None = None
    top_p: Unit | None = None
    min_p: Unit | None = None
    typical_p: Unit | None = None
    repeat_last_n: Annotated[int, msgspec.Meta(ge=-1)] | None = None
    temperature: NonNegativeFloat | None = None
    repeat_penalty: NonNegativeFloat | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: list[str] | None = None


OPTION_TYPES: Final[Mapping[str, type]] = MappingProxyType(
    {
        "num_ctx": int,
        "num_batch": int,
        "num_gpu": int,
        "main_gpu": int,
        "use_mmap": bool,
        "num_thread": int,
        "draft_num_predict": int,
        "num_keep": int,
        "seed": int,
        "num_predict": int,
        "top_k": int,
        "top_p": float,
        "min_p": float,
        "typical_p": float,
        "repeat_last_n": int,
        "temperature": float,
        "repeat_penalty": float,
        "presence_penalty": float,
        "frequency_penalty": float,
        "stop": list,
    }
)
"""Option name → the Python type of its value (``list`` is a list of strings)."""

DEPRECATED_OPTIONS: Final[frozenset[str]] = frozenset(
    {
        "numa",
        "penalize_newline",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "tfs_z",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
    }
)
"""Options that Ollama no longer honours; they are accepted and ignored."""

DEFAULT_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "num_batch": 512,
        "num_gpu": -1,
        "num_thread": 0,
        "num_keep": 4,
        "seed": -1,
        "num_predict": -1,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_last_n": 64,
        "temperature": 0.8,
        "repeat_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }
)
"""Ollama's built-in defaults. ``num_ctx`` and ``draft_num_predict`` depend on the machine and
model and are left to the scheduler; ``main_gpu``, ``use_mmap`` and ``stop`` have no default."""

_GO_TYPE_NAMES: Final[Mapping[type, str]] = {int: "integer", float: "float32", bool: "boolean", list: "array"}
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = {"inf": math.inf, "infinity": math.inf, "nan": math.nan}
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_FLOAT32_MAX = 3.4028234663852886e38
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class OptionTypeError(ValueError):
    """A known option was given a value of the wrong JSON type (Ollama answers 500)."""


class OptionValueError(ValueError):
    """A known option was given a value outside the range a runner accepts."""


def _float32(value: float) -> float:
    """``value`` rounded to float32, written with the fewest digits that round-trip (as Go does)."""
    packed = float(struct.unpack("<f", struct.pack("<f", value))[0])
    if math.isnan(packed) or math.isinf(packed):
        return packed
    for digits in range(1, 10):
        candidate = float(f"{packed:.{digits}g}")
        if float(struct.unpack("<f", struct.pack("<f", candidate))[0]) == packed:
            return candidate
    return packed


def _parse_float(raw: str) -> float | None:
    text = raw.lstrip("+-")
    word = _FLOAT_WORDS.get(text.lower())
    if word is not None:
        return -word if raw.startswith("-") else word
    if not _FLOAT.fullmatch(raw):
        return None
    value = float(raw)
    if abs(value) > _FLOAT32_MAX:
        return None
    return _float32(value)


def parse_parameter_value(name: str, raw: str) -> Any:
    """The typed value of a Modelfile ``PARAMETER name raw`` line.

    ``stop`` gives a one-element list (repeated lines are joined by the caller). Raises
    ``ValueError`` with Ollama's messages: ``unknown parameter 'x'``, ``invalid int value [x]``,
    ``invalid float value [x]``, ``invalid bool value [x]``; or ``OptionValueError`` when the value
    is out of range.
    """
    kind = OPTION_TYPES.get(name)
    if kind is None:
        raise ValueError(f"unknown parameter '{name}'")
    value: Any
    if kind is list:
        value = [raw]
    elif kind is bool:
        if raw not in _TRUE and raw not in _FALSE:
            raise ValueError(f"invalid bool value [{raw}]")
        value = raw in _TRUE
    elif kind is int:
        if not _INT.fullmatch(raw) or not _INT64_MIN <= int(raw) <= _INT64_MAX:
            raise ValueError(f"invalid int value [{raw}]")
        value = int(raw)
    else:
        parsed = _parse_float(raw)
        if parsed is None:
            raise ValueError(f"invalid float value [{raw}]")
        value = parsed
    _check_range({name: value})
    return value


def _coerce(name: str, value: Any) -> Any:
    """A JSON value checked against the option's type, as Ollama's ``Options.FromMap`` does."""
    kind = OPTION_TYPES[name]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionTypeError(f'option "{name}" must be of type {_GO_TYPE_NAMES[int]}')
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionValueError(f'option "{name}" must be a finite number')
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionTypeError(f'option "{name}" must be of type {_GO_TYPE_NAMES[float]}')
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise OptionTypeError(f'option "{name}" must be of type {_GO_TYPE_NAMES[bool]}')
        return value
    if not isinstance(value, (list, tuple)):
        raise OptionTypeError(f'option "{name}" must be of type {_GO_TYPE_NAMES[list]}')
    if not all(isinstance(item, str) for item in value):
        raise OptionTypeError(f'option "{name}" must be of an array of strings')
    return list(value)


def _check_range(values: Mapping[str, Any]) -> None:
    try:
        msgspec.convert(values, Options)
    except msgspec.ValidationError as exc:
        message = str(exc)
        detail, _, path = message.rpartition(" - at `$.")
        name = path.rstrip("`")
        if not detail:
            raise OptionValueError(f"invalid options: {message}") from None
        raise OptionValueError(f'option "{name}" is out of range: {detail}') from None


def merge_options(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge option layers, later layers winning, into a dict of checked values.

    Pass ``DEFAULT_OPTIONS``, the model's parameters and the request's options, in that order.
    Unknown and deprecated names are dropped, ``null`` values leave the earlier layer's value,
    JSON numbers given for integer options are truncated. Raises ``OptionTypeError`` for a value
    of the wrong type and ``OptionValueError`` for a value out of range.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            if name not in OPTION_TYPES:
                log.debug("ignoring %s option %r", "deprecated" if name in DEPRECATED_OPTIONS else "unknown", name)
                continue
            if value is None:
                continue
            merged[name] = _coerce(name, value)
    _check_range(merged)
    return merged
