"""Building blocks of the OpenAPI document's schemas (JSON Schema fragments).

Functions, not shared constants: every document is a fresh tree.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Json", "count", "nullable", "record", "ref", "string", "strings", "text_or_null"]

Json = dict[str, Any]


def string() -> Json:
    return {"type": "string"}


def strings() -> Json:
    return {"type": "array", "items": string()}


def count() -> Json:
    return {"type": "integer", "minimum": 0}


def text_or_null() -> Json:
    return {"type": ["string", "null"]}


def ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def record(properties: Json, *, description: str | None = None) -> Json:
    """An object with exactly these properties, every one required (in their order)."""
    return {
        "type": "object",
        **({"description": description} if description is not None else {}),
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def nullable(schema: Json) -> Json:
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}
