"""Serializer fields and checks shared by the registry API's serializers.

Multipart forms (the upload) carry lists and objects as JSON text; JSON bodies
carry them as they are. The fields here accept both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils import html

from controlplane.rest import json_problem

# PostgreSQL's `integer`, the column type behind PositiveIntegerField.
PG_INT_MAX = 2_147_483_647


def reject_unexpected_fields(serializer: serializers.Serializer, immutable: Mapping[str, str] | None = None) -> None:
    """Refuse input keys the serializer cannot write, saying why for each."""
    immutable = immutable or {}
    writable = sorted(name for name, field in serializer.fields.items() if not field.read_only)
    errors: dict[str, list[str]] = {}
    for key in serializer.initial_data:
        if key in writable:
            continue
        if key in immutable:
            errors[key] = [immutable[key]]
        elif key in serializer.fields:
            errors[key] = ["This field is read-only."]
        else:
            errors[key] = [f"Unknown field. Fields you can send here: {', '.join(writable)}."]
    if errors:
        raise serializers.ValidationError(errors)


def _parse_json_text(data: Any, example: str) -> Any:
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    if not isinstance(data, str):
        return data
    try:
        value = orjson.loads(data)
    except ValueError:
        raise serializers.ValidationError(f"Send this field as JSON, e.g. {example}.") from None
    if (problem := json_problem(value)) is not None:
        raise serializers.ValidationError(problem)
    return value


def _form_value(field: serializers.Field, dictionary: Any) -> Any:
    # A multipart form carries the value as one piece of JSON text.
    if field.field_name not in dictionary:
        return empty
    return dictionary.get(field.field_name)


class JSONListField(serializers.ListField):
    """A list; in multipart forms, its JSON text (`tags=["a", "b"]`)."""

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary):
            return _form_value(self, dictionary)
        return super().get_value(dictionary)

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(_parse_json_text(data, '["a", "b"]'))


class JSONObjectField(serializers.DictField):
    """An object; in multipart forms, its JSON text (`metadata={"auc": 0.91}`)."""

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary):
            return _form_value(self, dictionary)
        return super().get_value(dictionary)

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(_parse_json_text(data, '{"key": "value"}'))


class FormBooleanField(serializers.BooleanField):
    # DRF reads a boolean missing from a form as False; here missing means "keep the default".
    default_empty_html = empty


def tags_field(**kwargs: Any) -> JSONListField:
    return JSONListField(
        child=serializers.CharField(max_length=64),
        max_length=32,
        help_text="Free-form labels.",
        **kwargs,
    )


@extend_schema_field({"type": "string", "format": "binary"})
class ArtifactFileField(serializers.FileField):
    """The uploaded file; documented as binary so the API docs offer a file picker."""


@extend_schema_field(OpenApiTypes.STR)
class FormJSONListField(JSONListField):
    """Documented as what a multipart form sends: the list's JSON text.

    `max_items` instead of `max_length`, which the schema would show as the
    length of the text.
    """

    def __init__(self, *, max_items: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_items = max_items

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if len(value) > self.max_items:
            raise serializers.ValidationError(f"Send at most {self.max_items} items.")
        return value


@extend_schema_field(OpenApiTypes.STR)
class FormJSONObjectField(JSONObjectField):
    """Documented as what a multipart form sends: the object's JSON text."""
