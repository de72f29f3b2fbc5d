"""
Small builders of JSON Schema (OpenAPI 3.1) fragments, shared by the
response schemas beside the renderers (L{render}) and the document
(L{openapi}).
"""

from __future__ import annotations


def ref(name: str) -> dict:
    """A reference to the component schema C{name}."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, description: str | None = None) -> dict:
    """C{kind} or null."""
    schema = {"type": [kind, "null"]}
    if description:
        schema["description"] = description
    return schema


def strings(description: str | None = None) -> dict:
    """An array of strings."""
    schema = {"type": "array", "items": {"type": "string"}}
    if description:
        schema["description"] = description
    return schema


def obj(properties: dict, required=(), description: str | None = None) -> dict:
    """An object with C{properties}, the C{required} ones listed."""
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema
