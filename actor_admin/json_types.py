"""The one name for a decoded JSON object whose fields are not checked yet, and the one way to decode
JSON that comes from outside.

Bodies from the outside (HTTP, websocket frames, YClients' answers, simulator frames) arrive as
``JSON`` and are read field by field with ``isinstance`` checks; what we build to send is ``JSON``
too. Anything with a fixed shape gets its own type instead (``session.Frame``, the store's records).

:func:`loads_untrusted` is the decoder of every request body and client frame: it refuses what
``json.loads`` accepts but the rest of the code cannot handle (docs/http-api.md#conventions) — text
that is not UTF-8 or has a byte order mark, ``NaN``/``Infinity``, numbers beyond a double or with
more digits than any field needs, lone surrogates (``"\\ud800"`` cannot be encoded again: a
database write or a log line would fail), duplicate keys, and nesting deeper than :data:`MAX_DEPTH`
(which would otherwise end in a ``RecursionError`` here or wherever the value is walked later).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, TypeAlias

JSON: TypeAlias = dict[str, Any]

#: Deepest nesting accepted (an object or array inside another counts one level). Our bodies use 3.
MAX_DEPTH: Final = 32
#: Most digits accepted in one number literal: a 64-bit id has 19; Python refuses ints past 4,300.
MAX_NUMBER_DIGITS: Final = 100


class JsonRejected(ValueError):
    """A body or frame that is not acceptable JSON; ``code`` is the documented error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _malformed(message: str) -> JsonRejected:
    return JsonRejected("malformed_json", message)


def _number(text: str) -> str:
    if sum(c.isdigit() for c in text) > MAX_NUMBER_DIGITS:
        raise JsonRejected("number_out_of_range", f"a number has more than {MAX_NUMBER_DIGITS} digits")
    return text


def _int(text: str) -> int:
    return int(_number(text))


def _float(text: str) -> float:
    value = float(_number(text))
    if math.isinf(value):
        raise JsonRejected("number_out_of_range", "a number is too large for a double")
    return value


def _constant(name: str) -> object:
    raise _malformed(f"{name} is not JSON")


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise JsonRejected("duplicate_key", f"the key {json.dumps(key)} appears twice in one object")
        result[key] = value
    return result


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant, strict=True
)


def loads_untrusted(raw: str | bytes) -> object:
    """Decode one JSON text from outside; :class:`JsonRejected` (a ``ValueError``) with its code if it
    is not acceptable: ``malformed_json``, ``duplicate_key``, ``number_out_of_range`` or ``too_deep``."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")  # strict: no encoded surrogates, no other encodings
        except UnicodeDecodeError:
            raise _malformed("the text is not UTF-8") from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise _malformed("the text starts with a byte order mark; send UTF-8 without one")
    try:
        value: object = _DECODER.decode(text)
    except JsonRejected:
        raise
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # JSONDecodeError; int() past Python's digit limit is caught above
        raise _malformed(f"not valid JSON: {exc}") from None
    _check_tree(value)
    return value


def _too_deep() -> JsonRejected:
    return JsonRejected("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")


def _check_tree(value: object) -> None:
    """Depth and text of every string, iteratively (a recursive walk is what must not happen)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise _too_deep()
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed("a string holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text") from None


__all__ = ["JSON", "MAX_DEPTH", "MAX_NUMBER_DIGITS", "JsonRejected", "loads_untrusted"]
