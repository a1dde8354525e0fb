"""Go's text formatting of values: ``fmt`` verbs, ``strconv.Quote`` and ``encoding/json``.

Ollama prints template values, Modelfile parameters and tool JSON with Go's rules; these
helpers reproduce them for Python values decoded from JSON (``dict``, ``list``, ``str``,
``int``, ``float``, ``bool``, ``None``). Objects with a ``go_string()`` method print through
it (Go's ``Stringer``) and objects with a ``go_json()`` method encode through it.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

_PRINTABLE_CATEGORIES = frozenset("LMNPS")
_QUOTE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def is_print(ch: str) -> bool:
    """Go's ``unicode.IsPrint``: letters, marks, numbers, punctuation, symbols and ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in _PRINTABLE_CATEGORIES


def _digits(value: float) -> tuple[str, int]:
    """Shortest round-trip digits of ``abs(value)`` and the decimal point position (Go's ``digs.dp``)."""
    _, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    return "".join(map(str, digits)), len(digits) + exponent


def _format_e(negative: bool, digits: str, point: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp = point - 1
    sign = "-" if exp < 0 else "+"
    return f"{'-' if negative else ''}{mantissa}e{sign}{abs(exp):02d}"


def _format_f(negative: bool, digits: str, point: int) -> str:
    if point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return ("-" if negative else "") + text


def format_float(value: float) -> str:
    """``fmt.Sprint`` of a float64 (``%v``, i.e. ``strconv.FormatFloat(v, 'g', -1, 64)``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    negative = math.copysign(1.0, value) < 0
    if value == 0:
        return "-0" if negative else "0"
    digits, point = _digits(value)
    if point - 1 < -4 or point - 1 >= 6:
        return _format_e(negative, digits, point)
    return _format_f(negative, digits, point)


def json_float(value: float) -> str:
    """A float64 as ``encoding/json`` writes it."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {format_float(value)}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    negative = value < 0
    digits, point = _digits(value)
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        text = _format_e(negative, digits, point)
        head, _, tail = text.partition("e")
        if tail.startswith("-0"):
            tail = "-" + tail[2:]
        return f"{head}e{tail}"
    return _format_f(negative, digits, point)


def quote(text: str) -> str:
    """Go's ``strconv.Quote``: a double-quoted string with Go escapes."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif is_print(ch):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def sprint(value: Any) -> str:
    """``fmt.Sprint`` of one value (the ``%v`` verb)."""
    if hasattr(value, "go_string"):
        return str(value.go_string())
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "map[" + " ".join(f"{sprint(k)}:{sprint(v)}" for k, v in items) + "]"
    if isinstance(value, Sequence):
        return "[" + " ".join(sprint(v) for v in value) + "]"
    return str(value)


def go_syntax(value: Any) -> str:
    """The ``%#v`` verb for the scalar values found in model parameters."""
    if isinstance(value, str):
        return quote(value)
    if value is None:
        return "<nil>"
    return sprint(value)


def json_string(text: str) -> str:
    """A JSON string as ``encoding/json`` writes it (HTML-safe escapes)."""
    out = ['"']
    for ch in text:
        escaped = _JSON_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def to_json(value: Any) -> str:
    """``json.Marshal`` of a value: maps with sorted keys, Go float and string encoding."""
    if hasattr(value, "go_json"):
        return str(value.go_json())
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, str):
        return json_string(value)
    if isinstance(value, Mapping):
        items = sorted(((str(k), v) for k, v in value.items()), key=lambda kv: kv[0])
        return "{" + ",".join(f"{json_string(k)}:{to_json(v)}" for k, v in items) + "}"
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


def ordered_json(value: Mapping[str, Any]) -> str:
    """A JSON object whose keys keep their order (Ollama's ordered maps)."""
    return "{" + ",".join(f"{json_string(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
