"""The API's JSON parser: bodies nested deeper than JSON_MAX_DEPTH or with more than
JSON_MAX_ITEMS values are a 400 before any serializer (or any recursion) sees them.
Without it a body nested 5,000 deep raised RecursionError, a 500 (issue 11)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Deeper than any real request (a job's arguments are ids and small values); far below
# the interpreter's recursion limit, so nothing downstream can overflow.
JSON_MAX_DEPTH = 32
# Values in one body: arrays of ids for a batch fit; a million-element body does not.
JSON_MAX_ITEMS = 100_000


def check_shape(value: Any) -> None:
    """ParseError when ``value`` nests deeper than JSON_MAX_DEPTH or holds more than
    JSON_MAX_ITEMS values. Iterative: it cannot overflow itself."""
    stack = [(value, 1)]
    items = 0
    while stack:
        node, depth = stack.pop()
        items += 1
        if items > JSON_MAX_ITEMS:
            raise ParseError(f"the JSON body holds more than {JSON_MAX_ITEMS} values")
        if isinstance(node, dict | list):
            if depth > JSON_MAX_DEPTH:
                raise ParseError(f"the JSON body is nested deeper than {JSON_MAX_DEPTH} levels")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"the JSON body is nested deeper than {JSON_MAX_DEPTH} levels"
            ) from None
        check_shape(data)
        return data
