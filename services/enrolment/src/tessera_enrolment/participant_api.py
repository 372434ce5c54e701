"""The gateway's OpenAPI document includes the participant routes it forwards, as the
services behind it define them: their parameters, bodies, answers and errors, with the
device token in place of the assertion the gateway adds. One document an app developer
generates a client from.

The gateway does not import the dialogue or rights services (each is a deployable of its
own, and the gateway never calls them to describe itself): their forwarded operations
are kept in ``participant_api.json`` beside this module, made from their own OpenAPI
documents by ``tests/support/openapi.py``; ``tests/unit/test_participant_api.py`` fails
when the file no longer matches them, and rewrites it with ``TESSERA_UPDATE_OPENAPI=1``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from fastapi import FastAPI

#: Each forwarded operation names the service behind it under this key.
FORWARDED_TO = "x-tessera-forwarded-to"


def forwarded_operations() -> dict[str, Any]:
    """``{"paths": ..., "components": {"schemas": ...}}`` of every forwarded operation."""
    return json.loads(files("tessera_enrolment").joinpath("participant_api.json").read_text(encoding="utf-8"))


def document_forwarded_routes(app: FastAPI, services: set[str]) -> None:
    """Serve ``app``'s OpenAPI with the operations it forwards to ``services`` merged in."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            forwarded = forwarded_operations()
            for path, operations in forwarded["paths"].items():
                for method, operation in operations.items():
                    if operation[FORWARDED_TO] in services:
                        document["paths"].setdefault(path, {})[method] = operation
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in forwarded["components"]["schemas"].items():
                if schemas.setdefault(name, schema) != schema:
                    raise RuntimeError(f"the gateway and a service behind it define {name} differently")
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
