"""The OpenAPI document says what the server enforces: patterns and closed request bodies.

Litestar builds a model's schema from its fields' types and length bounds, but leaves out a
field's `pattern` and a model's `extra="forbid"`, so the document described bodies the server
then refused with 422 (generated clients and fuzzers sent names with capitals, or extra keys).
This schema plugin adds both from pydantic's own JSON schema of the model.
"""

from typing import TYPE_CHECKING, Any

from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.plugins.pydantic import PydanticSchemaPlugin
from litestar.typing import FieldDefinition
from pydantic import BaseModel

if TYPE_CHECKING:
    from litestar._openapi.schema_generation.schema import SchemaCreator


class StrictPydanticSchemaPlugin(PydanticSchemaPlugin):
    """Pydantic models as Litestar describes them, plus their patterns and `extra="forbid"`."""

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: "SchemaCreator"
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        model = field_definition.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            if model.model_config.get("extra") == "forbid":
                schema.additional_properties = False
            properties = model.model_json_schema(by_alias=self.prefer_alias).get("properties", {})
            for name, described in (schema.properties or {}).items():
                _add_patterns(described, properties.get(name, {}))
        return schema


def _add_patterns(schema: Schema | Reference, pydantic: dict[str, Any]) -> None:
    """Copy `pattern` from pydantic's schema of one field into Litestar's, where they match:
    the field itself, its array items, or the branch of a union of the same type."""
    if isinstance(schema, Reference):
        return  # a model of its own: described by its own component
    if "pattern" in pydantic and schema.pattern is None and schema.type == _type(pydantic):
        schema.pattern = pydantic["pattern"]
    if isinstance(pydantic.get("items"), dict) and schema.items is not None:
        _add_patterns(schema.items, pydantic["items"])
    for branch in pydantic.get("anyOf", []):
        for option in [*(schema.one_of or []), *(schema.any_of or [])]:
            if isinstance(option, Schema) and option.type == _type(branch):
                _add_patterns(option, branch)


def _type(pydantic: dict[str, Any]) -> OpenAPIType | None:
    """The OpenAPI type of a pydantic JSON-schema node, as Litestar spells it."""
    kind = pydantic.get("type")
    return OpenAPIType(kind) if isinstance(kind, str) else None
