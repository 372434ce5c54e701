from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.apps import enrolment_settings, running
from tessera_enrolment.app import create_app

pytestmark = pytest.mark.connected


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
async def gateway_app(stack, spans):
    return create_app(enrolment_settings(stack), span_exporter=spans)


@pytest.fixture(scope="module")
async def gateway(gateway_app) -> AsyncIterator[httpx.AsyncClient]:
    async with running(gateway_app) as client:
        yield client
