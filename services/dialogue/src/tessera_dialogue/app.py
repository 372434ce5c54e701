"""The dialogue service's bootstrap: settings, broker, store, data keys, telemetry →
one FastAPI app."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import Field, SecretStr

from tessera_common.datakeys import MAX_CACHE_SECONDS, DataKeyClient, watch_key_destruction
from tessera_common.postgres import migration_dirs
from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings
from tessera_dialogue.api import (
    Answers,
    PersonalDataProblem,
    build_internal_router,
    build_router,
    personal_data_problem,
    seal_legacy_texts,
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
    #: How long an unwrapped data key may stay in this process's memory (at most 60 s;
    #: 0: not at all). Every erasure waits for this process to drop it, or for this long.
    key_cache_seconds: float = Field(default=MAX_CACHE_SECONDS, ge=0, le=MAX_CACHE_SECONDS)


def create_app(
    settings: DialogueSettings | None = None,
    span_exporter: SpanExporter | None = None,
    rights_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``rights_transport`` lets a test reach an in-process rights app instead of a port."""
    settings = settings or DialogueSettings()
    wiring = wire(settings, migration_dirs("dialogue"), span_exporter)
    store = DialogueStore(wiring.database)
    keys = DataKeyClient(settings.rights_url, settings.internal_token.get_secret_value(), transport=rights_transport,
                         cache_seconds=settings.key_cache_seconds)
    watch_key_destruction(wiring.broker, keys)
    marker_key = settings.erased_marker_key.get_secret_value()
    register_handlers(wiring.consumer(CONSUMER), store, marker_key)
    answers = Answers(store, keys, marker_key)
    background: list[asyncio.Task] = []

    async def start() -> None:
        background.append(asyncio.create_task(seal_legacy_texts(store, answers)))

    async def stop() -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await keys.aclose()
    app = service_app(
        wiring,
        title="Tessera dialogue",
        description="Dialogues, answers, the group view and personal-data screening.",
        routers=[
            build_router(store, answers, settings.gateway_public_key),
            build_internal_router(store, answers, settings.internal_token.get_secret_value()),
        ],
        on_start=start,
        on_stop=stop,
    )
    app.add_exception_handler(PersonalDataProblem, personal_data_problem)  # type: ignore[arg-type]
    return app


SETTINGS_CLASS = DialogueSettings


def main() -> None:
    settings = DialogueSettings()
    serve(create_app(settings), settings)
