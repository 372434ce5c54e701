"""The AsyncAPI 3 document of a tenant's own topic, generated from the pydantic models
that produce its events (:data:`tessera_common.events.TENANT_EVENTS`), so the contract
a tenant's engineers read cannot drift from what is published.

The gateway serves it at ``/asyncapi.json`` and as a page at ``/asyncapi``; a copy is
kept in the repository (``docs/asyncapi.json``), which ``tests/unit/test_asyncapi.py``
keeps current, and ``tests/integration/test_tenant_stream.py`` validates real events
from the broker against its schemas.
"""

from __future__ import annotations

import html
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from tessera_common.events import TENANT_EVENTS

SCHEMA_REF = "#/components/schemas/{model}"


def _message_name(model: type) -> str:
    return model.model_fields["type"].default.removeprefix("io.tessera.tenant.").removesuffix(".v1")


def asyncapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema([(model, "validation") for model in TENANT_EVENTS], ref_template=SCHEMA_REF)
    messages = {
        _message_name(model): {
            "name": model.model_fields["type"].default,
            "title": model.__name__,
            "summary": (model.__doc__ or model.model_fields["data"].annotation.__doc__ or "").split("\n\n")[0]
            .replace("\n", " ").strip(),
            "contentType": "application/json",
            "payload": {"$ref": SCHEMA_REF.format(model=model.__name__)},
        }
        for model in TENANT_EVENTS
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Tessera: a tenant's own event stream",
            "version": "1.0.0",
            "description": (
                "What an organisation's systems read on their Kafka topic: answers as they are given, changed "
                "and withdrawn; dialogues as they change; rights requests; erasure notices. Every message is a "
                "CloudEvents 1.0 envelope plus tenant_id, its type in `type`. Free text is sealed under the "
                "participant's data key (AES-256-GCM, 12-byte nonce, associated data "
                "`tessera:<participant_id>:answer-text`); fetch keys in batches with "
                "`POST /v1/tenants/{tenant_id}/data-keys:batchGet` on the rights service while they exist. "
                "An erasure notice means: erase every copy of that participant (of that dialogue, if named)."),
        },
        "defaultContentType": "application/json",
        "channels": {
            "tenantEvents": {
                "address": "tenant.{tenant_id}.events.v1",
                "title": "The tenant's topic",
                "description": "Keyed by participant ID (answers, erasure notices), dialogue ID (dialogues) or "
                               "request ID (rights requests): one key's events arrive in order.",
                "parameters": {"tenant_id": {"description": "the tenant's ID (t_…)"}},
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
            },
        },
        "operations": {
            "receiveTenantEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/tenantEvents"},
                "summary": "A tenant's systems consume their own topic (consumer group prefix: the tenant ID).",
                "messages": [{"$ref": f"#/channels/tenantEvents/messages/{name}"} for name in messages],
            },
        },
        "components": {"messages": messages, "schemas": dict(sorted(schemas["$defs"].items()))},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def asyncapi_page(document: dict[str, Any]) -> str:
    """The same document as a page a person reads: each message, its fields and what
    they mean. No script; the JSON stays the contract."""
    schemas = document["components"]["schemas"]

    def rows(schema: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        required = set(schema.get("required", []))
        for name, field in schema.get("properties", {}).items():
            target = field
            ref = field.get("$ref") or next((a.get("$ref") for a in field.get("anyOf", []) if "$ref" in a), None)
            kind = field.get("type") or " | ".join(a.get("type", a.get("$ref", "").rsplit("/", 1)[-1])
                                                   for a in field.get("anyOf", [])) or "object"
            if "const" in field:
                kind = f"“{field['const']}”"
            elif "enum" in field:
                kind = " | ".join(f"“{v}”" for v in field["enum"])
            out.append(f"<tr><td><code>{html.escape(prefix + name)}</code></td><td>{html.escape(str(kind))}</td>"
                       f"<td>{'yes' if name in required else ''}</td>"
                       f"<td>{html.escape(target.get('description', ''))}</td></tr>")
            if ref and prefix.count(".") < 2:
                out += rows(schemas[ref.rsplit("/", 1)[-1]], f"{prefix}{name}.")
        return out

    sections = []
    for name, message in document["components"]["messages"].items():
        schema = schemas[message["payload"]["$ref"].rsplit("/", 1)[-1]]
        sections.append(
            f"<section><h2 id=\"{html.escape(name)}\"><code>{html.escape(message['name'])}</code></h2>"
            f"<p>{html.escape(message['summary'])}</p><table><thead><tr><th scope=\"col\">field</th>"
            f"<th scope=\"col\">type</th><th scope=\"col\">required</th><th scope=\"col\">meaning</th></tr>"
            f"</thead><tbody>{''.join(rows(schema))}</tbody></table></section>")
    info = document["info"]
    channel = document["channels"]["tenantEvents"]
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(info['title'])}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem;line-height:1.45}"
        "table{border-collapse:collapse;width:100%}td,th{border:1px solid #bbb;padding:.3rem;text-align:left;"
        "vertical-align:top}code{font-size:.95em}</style></head><body>"
        f"<h1>{html.escape(info['title'])}</h1><p>{html.escape(info['description'])}</p>"
        f"<p>Topic: <code>{html.escape(channel['address'])}</code>. {html.escape(channel['description'])} "
        "The machine-readable contract: <a href=\"/asyncapi.json\">/asyncapi.json</a> (AsyncAPI 3.0).</p>"
        f"{''.join(sections)}</body></html>")
