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


# JSON types each field kind accepts as is. DRF would coerce 123 to "123" for a
# CharField and "12" to 12 for an IntegerField; a job's arguments are typed instead, so a
# wrong type is a 400 naming the field, as docs/api.md says.
_JSON_TYPES: tuple[tuple[type, tuple[type, ...], str], ...] = (
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.DecimalField, (int, float, str), "a number"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ListField, (list,), "a list"),
)


class Contract(StrictSerializer):
    """Base of a job's API arguments: each field is a keyword argument of the task, of
    the JSON type its field says (no coercion)."""

    not_an_object = "must be an object of named arguments"
    unknown_field = "unknown argument"

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping):
            wrong = {}
            for name, field in self.fields.items():
                if name not in data or data[name] is None:
                    continue
                for kind, accepted, label in _JSON_TYPES:
                    if isinstance(field, kind):
                        value = data[name]
                        is_bool = isinstance(value, bool) and bool not in accepted
                        if is_bool or not isinstance(value, accepted):
                            wrong[name] = [f"must be {label}"]
                        break
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)
