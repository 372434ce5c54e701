"""The dialogue service's bootstrap: settings, broker, store, data keys, telemetry →
one FastAPI app."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import Field, SecretStr

from tessera_common.datakeys import DataKeyClient
from tessera_common.postgres import migration_dirs
from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings
from tessera_dialogue.api import (
    Answers,
    PersonalDataProblem,
    build_internal_router,
    build_router,
    personal_data_problem,
)
from tessera_dialogue.handlers import CONSUMER, register_handlers
from tessera_dialogue.store import DialogueStore


class DialogueSettings(ServiceSettings):
    service_name: str = "tessera-dialogue"
    port: int = 8002
    database_url: SecretStr = SecretStr("postgresql://tessera_dialogue@127.0.0.1:5432/tessera_dialogue")
    #: A dialogue with many questions is larger than the default body limit.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    #: The rights service, which holds the participants' data keys.
    rights_url: str = "http://127.0.0.1:8003"


def create_app(
    settings: DialogueSettings | None = None,
    span_exporter: SpanExporter | None = None,
    rights_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``rights_transport`` lets a test reach an in-process rights app instead of a port."""
    settings = settings or DialogueSettings()
    wiring = wire(settings, migration_dirs("dialogue"), span_exporter)
    store = DialogueStore(wiring.database)
    keys = DataKeyClient(settings.rights_url, settings.internal_token.get_secret_value(), transport=rights_transport)
    marker_key = settings.erased_marker_key.get_secret_value()
    register_handlers(wiring.consumer(CONSUMER), store, marker_key)
    answers = Answers(store, keys, marker_key)
    app = service_app(
        wiring,
        title="Tessera dialogue",
        description="Dialogues, answers, the group view and personal-data screening.",
        routers=[
            build_router(store, answers, settings.gateway_public_key),
            build_internal_router(store, answers, settings.internal_token.get_secret_value()),
        ],
        on_stop=keys.aclose,
    )
    app.add_exception_handler(PersonalDataProblem, personal_data_problem)  # type: ignore[arg-type]
    return app


SETTINGS_CLASS = DialogueSettings


def main() -> None:
    settings = DialogueSettings()
    serve(create_app(settings), settings)
