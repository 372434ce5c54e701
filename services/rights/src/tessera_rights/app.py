"""Rights service bootstrap. Not built yet: it answers /healthz and /readyz (its broker
and store) so the platform runs whole; its routes and subscribers come with its issue."""

from __future__ import annotations

from fastapi import FastAPI

from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings


class RightsSettings(ServiceSettings):
    service_name: str = "tessera-rights"
    port: int = 8003
    mongo_database: str = "tessera_rights"


def create_app(settings: RightsSettings | None = None) -> FastAPI:
    settings = settings or RightsSettings()
    return service_app(wire(settings), title="Tessera rights", description="Not built yet: health routes only.")


def main() -> None:
    settings = RightsSettings()
    serve(create_app(settings), settings)
