"""The AsyncAPI document of a tenant's topic is generated from the event models; the
copy kept in the repository (docs/asyncapi.json) must be that document. With
TESSERA_UPDATE_ASYNCAPI=1 this rewrites the copy instead of failing."""

import json
import os
from pathlib import Path

from tessera_common.asyncapi import asyncapi_document, asyncapi_page, render
from tessera_common.events import TENANT_EVENTS

KEPT = Path(__file__).parents[2] / "docs/asyncapi.json"


def test_the_kept_document_is_the_generated_one() -> None:
    current = render(asyncapi_document())
    if os.environ.get("TESSERA_UPDATE_ASYNCAPI") == "1":
        KEPT.write_text(current, encoding="utf-8")
    assert KEPT.read_text(encoding="utf-8") == current, (
        "the tenant events changed: run TESSERA_UPDATE_ASYNCAPI=1 uv run pytest tests/unit/test_asyncapi.py "
        "and commit docs/asyncapi.json")


def test_every_tenant_event_is_a_message_with_a_resolvable_payload() -> None:
    document = asyncapi_document()
    messages = document["components"]["messages"]
    assert {m["name"] for m in messages.values()} == {e.model_fields["type"].default for e in TENANT_EVENTS}
    refs = [m["payload"]["$ref"].rsplit("/", 1)[-1] for m in messages.values()]
    assert set(refs) <= set(document["components"]["schemas"])
    text = json.dumps(document)
    assert "#/$defs/" not in text  # every reference points into components
    # No device facts and no raw free text on a tenant's topic.
    answer = document["components"]["schemas"]["TenantAnswerData"]["properties"]
    assert "platform" not in answer and "form_factor" not in answer
    assert answer["text"]["anyOf"][0]["$ref"].endswith("/EncryptedText")
    assert "io.tessera.tenant.answer.v1" in asyncapi_page(document)
