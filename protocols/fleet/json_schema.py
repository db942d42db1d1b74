"""JSON Schemas of the contract's models, self-contained, for documents that embed them (OpenAPI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

SchemaHook = Callable[[type], dict[str, Any]]


def inline_schema(kind: Any, schema_hook: SchemaHook | None = None) -> dict[str, Any]:
    """msgspec's JSON Schema of ``kind`` with every ``$ref`` replaced by its definition (the contract's
    models are not recursive), so it can be placed anywhere in another document."""
    schema: dict[str, Any] = msgspec.json.schema(kind, schema_hook=schema_hook)
    defs: dict[str, Any] = schema.pop("$defs", {})
    inlined: dict[str, Any] = _inline(schema, defs)
    return inlined


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node
