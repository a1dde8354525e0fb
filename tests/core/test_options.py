"""Runtime options: defaults, Modelfile PARAMETER values, and merging request options."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from ollama_core.options import (
    DEFAULT_OPTIONS,
    DEPRECATED_OPTIONS,
    OPTION_TYPES,
    Options,
    OptionTypeError,
    OptionValueError,
    merge_options,
    parse_parameter_value,
)


def test_defaults_are_ollamas() -> None:
    assert dict(DEFAULT_OPTIONS) == {
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
    assert set(OPTION_TYPES) == set(Options.__struct_fields__)
    assert not DEPRECATED_OPTIONS & set(OPTION_TYPES)


def test_options_struct_round_trips_and_omits_unset() -> None:
    options = msgspec.convert({"num_ctx": 2048, "stop": ["</s>"], "unknown": 1}, Options)
    assert options.num_ctx == 2048 and options.temperature is None
    assert msgspec.json.encode(options) == b'{"num_ctx":2048,"stop":["</s>"]}'


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("num_ctx", "4096", 4096),
        ("seed", "-1", -1),
        ("num_predict", "+5", 5),
        ("top_k", "1", 1),
        ("temperature", "0.7", 0.7),
        ("temperature", "1", 1.0),
        ("top_p", ".5", 0.5),
        ("min_p", "5e-2", 0.05),
        ("temperature", "0.1234567891", 0.12345679),
        ("repeat_penalty", "1.1", 1.1),
        ("presence_penalty", "-1.5", -1.5),
        ("use_mmap", "true", True),
        ("use_mmap", "F", False),
        ("use_mmap", "0", False),
        ("main_gpu", "1", 1),
        ("stop", "### User:", ["### User:"]),
        ("stop", "<|eot_id|>", ["<|eot_id|>"]),
    ],
)
def test_parameter_values_are_typed(name: str, raw: str, expected: Any) -> None:
    value = parse_parameter_value(name, raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("bogus", "1", "unknown parameter 'bogus'"),
        ("Temperature", "1", "unknown parameter 'Temperature'"),
        ("num_ctx", "4.5", "invalid int value [4.5]"),
        ("num_ctx", "1_000", "invalid int value [1_000]"),
        ("num_ctx", "99999999999999999999", "invalid int value [99999999999999999999]"),
        ("temperature", "warm", "invalid float value [warm]"),
        ("temperature", "1e39", "invalid float value [1e39]"),
        ("use_mmap", "yes", "invalid bool value [yes]"),
    ],
)
def test_bad_parameter_values_fail_like_ollama(name: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_parameter_value(name, raw)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("num_ctx", "0"),
        ("num_batch", "0"),
        ("top_p", "1.5"),
        ("min_p", "-0.1"),
        ("temperature", "-1"),
        ("top_k", "-1"),
        ("num_predict", "-3"),
        ("repeat_last_n", "-2"),
        ("num_thread", "-1"),
        ("num_keep", "-2"),
    ],
)
def test_parameter_values_out_of_range(name: str, raw: str) -> None:
    with pytest.raises(OptionValueError, match=f'option "{name}" is out of range'):
        parse_parameter_value(name, raw)


def test_merge_applies_layers_in_order() -> None:
    merged = merge_options(
        DEFAULT_OPTIONS,
        {"temperature": 0.2, "stop": ["<|im_end|>", "<|im_start|>"], "num_ctx": 8192},
        {"temperature": 1, "stop": ["\n"], "seed": 42, "top_p": None},
    )
    assert merged["temperature"] == 1.0 and isinstance(merged["temperature"], float)
    assert merged["stop"] == ["\n"]
    assert merged["seed"] == 42
    assert merged["num_ctx"] == 8192
    assert merged["top_p"] == 0.9
    assert merged["top_k"] == 40


@pytest.mark.parametrize(("value", "expected"), [(2048.9, 2048), (-1.5, -1), (7, 7)])
def test_merge_truncates_json_numbers_for_ints(value: float, expected: int) -> None:
    assert merge_options({"num_predict": value}) == {"num_predict": expected}


def test_merge_drops_unknown_and_deprecated(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ollama_core.options"):
        merged = merge_options({"mirostat": 2, "numa": True, "tfs_z": 1.0, "made_up": "x", "top_k": 5})
    assert merged == {"top_k": 5}
    assert "made_up" in caplog.text and "mirostat" in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "0.5"}, 'option "temperature" must be of type float32'),
        ({"temperature": True}, 'option "temperature" must be of type float32'),
        ({"num_ctx": "2048"}, 'option "num_ctx" must be of type integer'),
        ({"num_ctx": False}, 'option "num_ctx" must be of type integer'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
        ({"main_gpu": 0.5j}, 'option "main_gpu" must be of type integer'),
        ({"stop": "</s>"}, 'option "stop" must be of type array'),
        ({"stop": ["a", 1]}, 'option "stop" must be of an array of strings'),
    ],
)
def test_merge_rejects_wrong_types(options: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionTypeError) as info:
        merge_options(DEFAULT_OPTIONS, options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "options",
    [
        {"num_ctx": 0},
        {"num_batch": -5},
        {"top_p": 2.0},
        {"typical_p": -0.5},
        {"temperature": -0.1},
        {"num_gpu": -2},
        {"main_gpu": -1},
        {"draft_num_predict": -1},
    ],
)
def test_merge_rejects_values_a_runner_cannot_take(options: dict[str, Any]) -> None:
    (name,) = options
    with pytest.raises(OptionValueError, match=f'option "{name}" is out of range'):
        merge_options(DEFAULT_OPTIONS, options)


def test_merge_result_converts_to_options() -> None:
    merged = merge_options(DEFAULT_OPTIONS, {"num_ctx": 4096, "use_mmap": False})
    options = msgspec.convert(merged, Options)
    assert options.num_ctx == 4096 and options.use_mmap is False and options.top_k == 40
