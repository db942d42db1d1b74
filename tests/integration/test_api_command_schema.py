"""The API's own documents: each command action described in OpenAPI by the fleet protocol's table
(and held to what the API accepts), and /docs working with no outside host."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from central.store.auth_rows import Role
from protocols.fleet.commands import ACTIONS
from tests.integration.api_client import LocalApi, add_cabinet, local_api

pytestmark = pytest.mark.integration

CAB = "cab-1"
SCHEDULE = {"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris"}
LATER_MS = int(time.time() * 1000) + 3_600_000

# (action, args or None for no args at all, accepted): the documents and the API must agree on each.
BODIES: list[tuple[str, dict[str, Any] | None, bool]] = [
    ("dim", {"level_pct": 40}, True),
    ("dim", {"level_pct": 0, "until": LATER_MS}, True),
    ("dim", {"level_pct": 101}, False),
    ("dim", {"level_pct": 40.5}, False),
    ("dim", {}, False),
    ("dim", None, False),
    ("dim", {"on": True}, False),
    ("switch", {"on": True}, True),
    ("switch", {"on": False, "until": "2099-01-01T00:00:00"}, True),
    ("switch", {"on": "yes"}, False),
    ("switch", {"on": True, "level_pct": 50}, False),
    ("set_schedule", {"schedule": SCHEDULE}, True),
    ("set_schedule", {"schedule": {**SCHEDULE, "latitude": 91}}, False),
    ("set_schedule", {"schedule": {"latitude": 47.32}}, False),
    ("clear_override", {}, True),
    ("clear_override", None, True),
    ("clear_override", {"level_pct": 1}, False),
    ("explode", {}, False),
]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[LocalApi]:
    async with local_api(tmp_path / "central.db") as local:
        await add_cabinet(local.store, CAB)
        yield local


async def _openapi(api: LocalApi) -> dict[str, Any]:
    async with api.client() as client:  # no token: the documents are public
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    return schema


async def test_each_action_has_a_schema_with_its_args_made_from_the_fleet_table(api: LocalApi) -> None:
    document = await _openapi(api)
    body = document["paths"]["/api/v1/commands"]["post"]["requestBody"]["content"]["application/json"]
    command = _resolve(document, body["schema"]["$ref"])
    mapping = command["discriminator"]["mapping"]
    assert command["discriminator"]["propertyName"] == "action"
    assert list(mapping) == list(ACTIONS)  # every action of the protocol, a new one included
    assert [one["$ref"] for one in command["oneOf"]] == list(mapping.values())
    variants = {action: _resolve(document, ref) for action, ref in mapping.items()}
    for action, variant in variants.items():
        assert variant["properties"]["action"] == {"type": "string", "const": action}
        assert variant["additionalProperties"] is False
        args = variant["properties"]["args"]
        # Each action says exactly what it takes: no open object to fill from another page.
        assert args["type"] == "object" and args["additionalProperties"] is False, (action, args)
        assert "properties" in args, action
        assert set(variant["properties"]) == {"target", "action", "args", "not_after"}

    level = variants["dim"]["properties"]["args"]["properties"]["level_pct"]
    assert (level["type"], level["minimum"], level["maximum"]) == ("integer", 0, 100)
    assert "0 (off) to 100" in level["description"]
    assert variants["dim"]["required"] == ["target", "action", "args"]
    on = variants["switch"]["properties"]["args"]["properties"]["on"]
    assert on["type"] == "boolean" and "off" in on["description"]
    until = variants["switch"]["properties"]["args"]["properties"]["until"]
    assert "milliseconds since 1970 UTC" in str(until)
    schedule = variants["set_schedule"]["properties"]["args"]["properties"]["schedule"]
    assert schedule["required"] == ["latitude", "longitude", "timezone"]
    assert "lighting schedule" in schedule["description"]
    assert variants["clear_override"]["properties"]["args"]["properties"] == {}
    assert "args" not in variants["clear_override"]["required"]


async def test_what_the_schema_accepts_the_api_accepts_and_what_it_refuses_the_api_refuses(
    api: LocalApi,
) -> None:
    document = await _openapi(api)
    # The OpenAPI document as the root of a JSON Schema (2020-12, as OpenAPI 3.1 has it), so that
    # its #/components/... references resolve.
    validator = jsonschema_rs.Draft202012Validator({**document, "$ref": "#/components/schemas/CommandIn"})
    disagreements = []
    async with api.client(Role.OPERATOR) as client:
        for action, args, accepted in BODIES:
            body: dict[str, Any] = {"target": {"cabinet": CAB}, "action": action}
            if args is not None:
                body["args"] = args
            valid = validator.is_valid(body)
            response = await client.post("/api/v1/commands", json=body)
            if (valid, response.status_code) != (accepted, 201 if accepted else 422):
                disagreements.append((body, valid, response.status_code, response.text[:200]))
    assert disagreements == []


async def test_docs_load_only_from_central_itself(api: LocalApi) -> None:
    """The page, its script and stylesheet, and what the stylesheet loads: all from central, or
    inline (data:), never from another host; the schema names no outside address either."""
    async with api.client() as client:
        html = (await client.get("/docs")).text
        references = re.findall(r"""(?:src|href)=["']([^"']*)["']""", html)
        assert references
        stylesheet = ""
        for url in references:
            if url.startswith("data:"):
                continue
            assert url.startswith("/") and not url.startswith("//"), url
            asset = await client.get(url)
            assert asset.status_code == 200, url
            if "text/css" in asset.headers["content-type"]:
                stylesheet = asset.text
        loaded = re.findall(r"""url\(\s*["']?([^"')\s]+)""", stylesheet)
        assert loaded, "the stylesheet's images were not found: the pattern is wrong"
        assert [url for url in loaded if not url.startswith("data:")] == []
        assert re.findall(r"@import", stylesheet) == []
        schema = (await client.get("/openapi.json")).text
    assert re.findall(r"https?://", schema) == []
