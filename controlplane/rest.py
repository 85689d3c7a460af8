"""The management API's shared bases: parsers that refuse what PostgreSQL cannot store,
and pagination with a maximum page size.

PostgreSQL refuses a NUL character in text and in `jsonb` (a DataError, which would be
a 500), and Python's `json` module recurses once per nesting level (a RecursionError,
also a 500). The parsers here answer both with 400 in DRF's error shape, naming the
field at fault, before any view sees the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination

NULL_MESSAGE = "Null characters are not allowed."  # DRF's own words, from ProhibitNullCharactersValidator
# Deeper than any body the API accepts (a rollout's gates are three levels); orjson's own
# limit is 1024, and a walk that deep would be wasted work.
MAX_JSON_DEPTH = 32
# The most items one page of a list answers; a larger `limit` is clamped to it.
MAX_PAGE_SIZE = 500


def json_problem(value: Any) -> str | None:
    """Why `value` (parsed JSON) cannot be stored, or None: a NUL character in a string or
    a key, or nesting deeper than MAX_JSON_DEPTH. Iterative, so depth costs no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return NULL_MESSAGE
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"Nested deeper than {MAX_JSON_DEPTH} levels."
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def refuse_unstorable(data: Any) -> None:
    """ParseError in DRF's shape: `{"field": ["..."]}` for an object's field, else `detail`."""
    if isinstance(data, Mapping):
        for key in data:
            problem = json_problem(key) or json_problem(_values(data, key))
            if problem is not None:
                raise ParseError({str(key).replace("\x00", "\\u0000"): [problem]})
        return
    problem = json_problem(data)
    if problem is not None:
        raise ParseError(problem)


def _values(data: Mapping[str, Any], key: str) -> Any:
    # A QueryDict keeps every value of a repeated form field; a dict has one.
    getlist = getattr(data, "getlist", None)
    return getlist(key) if getlist is not None else data[key]


class JSONParser(parsers.JSONParser):
    """orjson instead of `json`: it refuses nesting past 1024 levels and lone surrogates
    (which PostgreSQL cannot encode) as invalid JSON instead of raising RecursionError."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            data = orjson.loads(stream.read() if stream is not None else b"")
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        refuse_unstorable(data)
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        refuse_unstorable(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        refuse_unstorable(parsed.data)
        return parsed


class Pagination(LimitOffsetPagination):
    """`?limit=&offset=`: 50 by default, at most MAX_PAGE_SIZE (a larger limit is clamped;
    one that is not a positive integer gives the default, as DRF does)."""

    max_limit = MAX_PAGE_SIZE
