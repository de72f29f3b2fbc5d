"""
What the web layer's JSON modules share: L{ms}, the one conversion of
seconds to the JSON's integer milliseconds, and small builders of JSON
Schema (OpenAPI 3.1) fragments for the request schemas (L{validate}), the
response schemas (L{render}) and the document (L{openapi}).
"""

from __future__ import annotations


def ms(seconds: float) -> int:
    """Seconds as whole milliseconds, the unit of every time in the JSON."""
    return round(seconds * 1000)


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
