"""`models.jsoncodec`: the JSON of every dispatched message and of the JSON columns reads back
as the value it encodes, as ``json.dumps`` of it would."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.jsoncodec import dumps, dumps_text

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _finite(value: Any) -> Any:
    """``value`` as it reads back: NaN and infinities are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


@given(JSON_VALUES)
def test_the_column_text_reads_back_as_the_value(value: Any) -> None:
    assert json.loads(dumps_text(value)) == _finite(value)


@given(JSON_VALUES)
def test_a_message_reads_back_as_the_value_or_fails_as_json_would(value: Any) -> None:
    try:
        expected = json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, as before
        with pytest.raises(UnicodeEncodeError):
            dumps(value)
        return
    assert json.loads(dumps(value)) == _finite(json.loads(expected))


def test_non_ascii_is_written_as_utf8_and_beyond_64_bits_falls_back_to_json() -> None:
    assert dumps({"unit": "区交通委"}) == '{"unit":"区交通委"}'.encode()
    assert json.loads(dumps_text({"n": 2 ** 70, 1: "一"})) == {"n": 2 ** 70, "1": "一"}


def test_numpy_floats_are_numbers_and_other_objects_are_refused() -> None:
    value = [{"unit": "区交通委", "probability": np.float64(0.94)}, ("停", np.float32(0.5))]
    assert json.loads(dumps_text(value)) == [{"unit": "区交通委", "probability": 0.94}, ["停", 0.5]]
    for encode in (dumps, dumps_text):
        with pytest.raises(TypeError, match="not JSON serializable"):
            encode({"at": object()})
