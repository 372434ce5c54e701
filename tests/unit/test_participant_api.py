"""The gateway's OpenAPI document describes the participant routes it forwards exactly
as the dialogue and rights services define them."""

from __future__ import annotations

import json
import os

from support.openapi import FRAGMENT, participant_api, render, service_documents
from tessera_common.identity import ASSERTION_HEADER
from tessera_enrolment.api import FORWARDED
from tessera_enrolment.app import EnrolmentSettings, create_app


def test_the_gateways_copy_of_the_forwarded_operations_is_current() -> None:
    expected = render(participant_api())
    if os.environ.get("TESSERA_UPDATE_OPENAPI") == "1":
        FRAGMENT.write_text(expected, encoding="utf-8")
    assert FRAGMENT.read_text(encoding="utf-8") == expected, (
        "the dialogue or rights participant routes changed: run "
        "TESSERA_UPDATE_OPENAPI=1 uv run pytest tests/unit/test_participant_api.py and commit the file")


def test_the_gateway_documents_every_forwarded_route_with_its_real_parameters_and_bodies() -> None:
    document = create_app(EnrolmentSettings(environment="test")).openapi()
    services = service_documents()
    for service, routes in FORWARDED.items():
        for method, path in routes:
            operation = document["paths"][path][method.lower()]
            behind = services[service]["paths"][path][method.lower()]
            assert operation.get("requestBody") == behind.get("requestBody"), path
            assert {p["name"] for p in operation.get("parameters", [])} == {
                p["name"] for p in behind.get("parameters", []) if p["name"] != ASSERTION_HEADER}, path
            assert set(behind["responses"]) <= set(operation["responses"]), path
            assert {"400", "401", "503"} <= set(operation["responses"]), path
            assert operation["security"] == [{"HTTPBearer": []}], path
    refs = {ref for ref in _refs(document)}
    assert refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])
    answer = document["paths"]["/v1/me/dialogues/{dialogue_id}/questions/{question_id}/answer"]["put"]
    assert answer["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AnswerIn"}
    assert {"200", "201", "404", "409", "410", "422"} <= set(answer["responses"])


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_error_a_route_documents_has_the_one_error_shape() -> None:
    document = create_app(EnrolmentSettings(environment="test")).openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    schema = json.dumps(response["content"]["application/json"]["schema"])
                    assert "Problem" in schema, (method, path, status)
