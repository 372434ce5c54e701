from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from playwright.async_api import Browser, async_playwright

from support.apps import Platform, enrolment_settings, running, running_platform
from support.browser import CHROMIUM
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


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, for a module's browser tests."""
    assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
async def platform(stack) -> AsyncIterator[Platform]:
    """The four services in-process on the real stack (support.apps.running_platform),
    one per test module; a module that needs other settings defines its own."""
    async with running_platform(stack) as running:
        yield running
