"""The participant operations the gateway forwards, taken from the dialogue and rights
services' own OpenAPI documents, as the gateway publishes them (``participant_api.json``
in the enrolment package; see :mod:`tessera_enrolment.participant_api`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tessera_common.http import ERROR_DESCRIPTIONS
from tessera_common.identity import ASSERTION_HEADER
from tessera_enrolment.api import FORWARDED, PUBLIC_FORWARDED
from tessera_enrolment.participant_api import FORWARDED_TO

FRAGMENT = (Path(__file__).parents[2] / "services/enrolment/src/tessera_enrolment/participant_api.json")
_PROBLEM = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
#: What the gateway itself answers on every forwarded route, besides the service's answers.
GATEWAY_ERRORS = {
    "400": {"description": "a header HTTP cannot carry (`malformed_header`), a request that cannot be forwarded "
                           "as sent (`malformed_request`), or " + ERROR_DESCRIPTIONS[400], "content": _PROBLEM},
    "401": {"description": "missing or invalid device token (`invalid_device_token`)", "content": _PROBLEM},
    "503": {"description": "the service behind the gateway does not answer, or " + ERROR_DESCRIPTIONS[503],
            "content": _PROBLEM},
}


def service_documents() -> dict[str, dict[str, Any]]:
    """The dialogue and rights services' OpenAPI documents, from apps that are made but
    never started (no broker, no store)."""
    from tessera_dialogue.app import DialogueSettings
    from tessera_dialogue.app import create_app as create_dialogue
    from tessera_rights.app import RightsSettings
    from tessera_rights.app import create_app as create_rights

    return {"dialogue": create_dialogue(DialogueSettings(environment="test")).openapi(),
            "rights": create_rights(RightsSettings(environment="test")).openapi()}


def participant_api(documents: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    documents = documents or service_documents()
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    forwarded = [(service, method, path, False) for service, routes in FORWARDED.items() for method, path in routes]
    forwarded += [(service, method, path, True) for service, routes in PUBLIC_FORWARDED.items()
                  for method, path in routes]
    for service, method, path, public in forwarded:
        document = documents[service]
        operation = copy.deepcopy(document["paths"][path][method.lower()])
        parameters = [p for p in operation.get("parameters", []) if p["name"] != ASSERTION_HEADER]
        operation.pop("parameters", None)
        if parameters:
            operation["parameters"] = parameters
        operation["tags"] = [f"device → {service}"]
        operation["operationId"] = f"{service}_{operation['operationId']}"
        if public:  # its own credential (a status secret) or none, as the service says
            errors = {**{code: e for code, e in GATEWAY_ERRORS.items() if code != "401"},
                      "404": {"description": "a path parameter that cannot be an ID (`not_found`)",
                              "content": _PROBLEM}}
        else:
            operation["security"] = [{"HTTPBearer": []}]
            errors = GATEWAY_ERRORS
        operation["responses"].update(copy.deepcopy(errors))
        operation["responses"] = dict(sorted(operation["responses"].items()))
        operation[FORWARDED_TO] = service
        paths.setdefault(path, {})[method.lower()] = operation
        for name in _referenced(operation, document["components"]["schemas"]):
            schema = document["components"]["schemas"][name]
            if schemas.setdefault(name, schema) != schema:
                raise ValueError(f"dialogue and rights define {name} differently")
    return {"paths": paths, "components": {"schemas": dict(sorted(schemas.items()))}}


def _referenced(node: Any, schemas: dict[str, Any]) -> set[str]:
    """The component schemas ``node`` refers to, and those they refer to."""
    found: set[str] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            ref = current.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in found:
                    found.add(name)
                    pending.append(schemas[name])
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
    return found


def render(fragment: dict[str, Any]) -> str:
    return json.dumps(fragment, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
