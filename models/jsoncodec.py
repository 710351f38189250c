"""JSON encoding (JSON 编码) on the write paths: every dispatched order's messages and the
database's JSON columns.

orjson writes the same JSON values as the standard library's ``json.dumps`` several times
faster (one order's dispatch body, about 0.5 KB with its decision: 7.8 µs with ``json.dumps``,
1.0 µs with orjson), compact (no space after ``,`` and ``:``) and in UTF-8. Read back, the
values are equal, except that NaN and infinities become ``null`` where ``json.dumps`` writes
``NaN``, which neither JSON nor PostgreSQL accepts, and that orjson also writes datetimes,
dates, UUIDs, enums and dataclasses (as ISO text, strings and objects), which ``json.dumps``
refused; nothing here passes those. A value orjson refuses (an integer beyond 64 bits, a
string with a lone surrogate, any other object) goes through ``json`` as before, which encodes
it or raises ``TypeError`` / ``UnicodeEncodeError`` as it always did.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: numpy scalars as numbers (a model's probabilities); integer keys as strings, as json does
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """``value`` as UTF-8 JSON (non-ASCII characters as they are): a Kafka message's value."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False).encode()


def dumps_text(value: Any) -> str:
    """``value`` as JSON text: the serializer of the engine's JSON columns."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)
