"""The API's JSON parser: DRF's, refusing bodies nested deeper than ``MAX_JSON_DEPTH``."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from routerhub.body_limits import MAX_JSON_DEPTH, nested_deeper_than


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if nested_deeper_than(None, data, MAX_JSON_DEPTH):
            raise ParseError(
                f"The body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
                "flatten it (schemas included)."
            )
        return data
