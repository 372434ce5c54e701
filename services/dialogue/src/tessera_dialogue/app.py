"""Dialogue service bootstrap. Not built yet: it answers /healthz and /readyz (its broker
and store) so the platform runs whole; its routes and subscribers come with its issue."""

from __future__ import annotations

from fastapi import FastAPI

from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings


class DialogueSettings(ServiceSettings):
    service_name: str = "tessera-dialogue"
    port: int = 8002
    mongo_database: str = "tessera_dialogue"


def create_app(settings: DialogueSettings | None = None) -> FastAPI:
    settings = settings or DialogueSettings()
    return service_app(wire(settings), title="Tessera dialogue", description="Not built yet: health routes only.")


def main() -> None:
    settings = DialogueSettings()
    serve(create_app(settings), settings)
