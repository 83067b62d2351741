"""Strict serializers: an unknown field is an error, never silently ignored.

``StrictSerializer`` is the base of the API's request bodies (a typo in an option must
not pass); ``Contract`` is the base of a job's API arguments (``job(api=...)``), whose
errors name the argument. One rule for both, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class StrictSerializer(serializers.Serializer[Any]):
    """Unknown fields are errors: a typo in an option must not be silently ignored."""

    #: What a value that is not an object is called in the error message.
    not_an_object = "must be a JSON object"
    #: The error an unknown field gets.
    unknown_field = "unknown field"

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({"non_field_errors": [self.not_an_object]})
        unknown = sorted(set(data) - set(self.fields))
        value: dict[str, Any] = super().to_internal_value(data)
        if unknown:
            raise serializers.ValidationError({name: [self.unknown_field] for name in unknown})
        return value


class Contract(StrictSerializer):
    """Base of a job's API arguments: each field is a keyword argument of the task."""

    not_an_object = "must be an object of named arguments"
    unknown_field = "unknown argument"
