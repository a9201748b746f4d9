"""shared.protocol.json_input: hostile JSON can only raise ValueError."""

from __future__ import annotations

import math

import pytest

from shared.protocol.json_input import finite_number, loads


@pytest.mark.parametrize("text", ["[" * 200_000, "[" * 5_000 + "]" * 5_000, '{"a":' * 5_000])
def test_nesting_too_deep_is_value_error(text):
    """Deep nesting is ValueError whether the document is complete or not."""
    with pytest.raises(ValueError):
        loads(text)


def test_ordinary_json_parses_as_json_loads_does():
    assert loads(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, math.nan, 10**400, True, False, None, "1", [1]]
)
def test_finite_number_refuses_what_is_no_usable_number(value):
    assert finite_number(value) is None


@pytest.mark.parametrize("value", [0, -3, 1.5, 1_700_000_000, 10**300])
def test_finite_number_accepts_finite_numbers(value):
    assert finite_number(value) == float(value)
