"""The metrics the README's runbook tells SRE to alert on exist under the names it
gives, and move with what they measure: consumer lag (as the age of handled events),
outbox age, rights requests open and overdue, dead letters, and the HTTP status of
every request (for the 5xx rate). All apps of this process share one Prometheus
registry, so one /metrics shows them all."""

from __future__ import annotations

import re

import pytest

from support.apps import bearer, create_tenant, enrol_devices, tenant_known_to_rights
from support.kafka import eventually, produce
from tessera_common.events import Topics

pytestmark = pytest.mark.connected



def sample(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels``."""
    for line in exposition.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return None


async def test_the_runbooks_metrics_are_exposed_and_move(platform, stack):
    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_rights(platform, tenant)
    (device,) = await enrol_devices(platform, tenant, 1)
    asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                        headers=bearer(device["device_token"]))
    assert asked.status_code == 202
    await produce(stack.kafka, Topics.TENANT_REGISTERED, b"not an event")

    async def exposed():
        text = (await platform.rights.get("/metrics")).text
        ready = (sample(text, "tessera_dead_letters_total", consumer="tessera-rights",
                        topic=Topics.TENANT_REGISTERED)
                 and sample(text, "tessera_consumer_event_age_seconds_count", consumer="tessera-analytics",
                            topic=Topics.DEVICE_ENROLLED))
        return text if ready else None

    text = await eventually(exposed, timeout=60)
    # Gauges per process: here they also see the apps earlier tests left in this process,
    # so only that they are exposed is checked; the counter and histogram above moved.
    for gauge in ("tessera_outbox_oldest_age_seconds", "tessera_rights_requests_open",
                  "tessera_rights_requests_overdue"):
        assert sample(text, gauge) is not None, gauge
    assert sample(text, "http_server_duration_milliseconds_count", http_status_code="202") is not None
