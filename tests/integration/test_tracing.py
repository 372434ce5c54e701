"""SRE follows one enrolment from the gateway's HTTP span, over Kafka, into analytics."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.apps import create_code, create_tenant, enrol, enrolment_settings, running
from support.kafka import eventually
from tessera_analytics.app import AnalyticsSettings
from tessera_analytics.app import create_app as create_analytics
from tessera_enrolment.app import create_app as create_gateway

pytestmark = pytest.mark.connected


async def test_one_trace_runs_from_the_enrolment_request_into_the_analytics_consumer(stack):
    gateway_spans, analytics_spans = InMemorySpanExporter(), InMemorySpanExporter()
    gateway_app = create_gateway(enrolment_settings(stack), span_exporter=gateway_spans)
    analytics_app = create_analytics(
        AnalyticsSettings(kafka_bootstrap_servers=stack.kafka_bootstrap, environment="test",
                          **stack.database("analytics")),
        span_exporter=analytics_spans,
    )
    async with running(gateway_app) as gateway, running(analytics_app):
        tenant = await create_tenant(gateway)
        code = await create_code(gateway, tenant)
        gateway_spans.clear()
        enrolled = await enrol(gateway, code["code"])
        assert enrolled.status_code == 201
        [request] = [s for s in gateway_spans.get_finished_spans()
                     if s.kind.name == "SERVER" and "enrolments" in s.name]

        async def consumer_span_in_the_same_trace():
            return [s for s in analytics_spans.get_finished_spans()
                    if s.kind.name == "CONSUMER" and s.context.trace_id == request.context.trace_id]

        [consumed] = await eventually(consumer_span_in_the_same_trace)

    assert "device-enrolled" in consumed.name
    # Events are keyed by participant ID; the key must not become a span attribute.
    assert enrolled.json()["participant_id"] not in repr(dict(consumed.attributes or {}))
    publishes = [s for s in gateway_spans.get_finished_spans()
                 if s.kind.name == "PRODUCER" and s.context.trace_id == request.context.trace_id]
    assert publishes, "the publish span belongs to the request's trace"


async def test_one_trace_runs_from_the_phone_through_the_gateway_into_dialogue_and_its_publish(stack):
    from support.apps import bearer, enrol_devices, running_platform, tenant_known_to_dialogue

    spans = {"enrolment": InMemorySpanExporter(), "dialogue": InMemorySpanExporter()}
    async with running_platform(stack, spans=spans) as platform:
        tenant = await create_tenant(platform.gateway)
        await tenant_known_to_dialogue(platform, tenant)
        base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
        dialogue = (await platform.dialogue.post(base, headers=bearer(tenant["api_key"]), json={
            "title": "Trace", "questions": [{"kind": "open_text", "prompt": "Why?"}]})).json()
        await platform.dialogue.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=bearer(tenant["api_key"]))
        (device,) = await enrol_devices(platform, tenant, 1)
        spans["enrolment"].clear()
        text = "Because the benches are broken"
        path = f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{dialogue['questions'][0]['question_id']}/answer"
        assert (await platform.gateway.put(path, json={"value": text},
                                           headers=bearer(device["device_token"]))).status_code == 201
        [request] = [s for s in spans["enrolment"].get_finished_spans()
                     if s.kind.name == "SERVER" and s.parent is None and "answer" in s.name]

        async def dialogue_spans_in_the_trace():
            found = [s for s in spans["dialogue"].get_finished_spans() if s.context.trace_id == request.context.trace_id]
            return found if any(s.kind.name == "PRODUCER" for s in found) else None

        found = await eventually(dialogue_spans_in_the_trace)

    # Dialogue's span for the route (INTERNAL rather than SERVER here only because the
    # gateway calls it in-process, inside its own server span).
    assert any(s.name.startswith("PUT /v1/me/dialogues/{dialogue_id}") for s in found)
    everything = [*spans["enrolment"].get_finished_spans(), *spans["dialogue"].get_finished_spans()]
    for span in everything:
        flat = repr(dict(span.attributes or {})) + span.name
        for secret in (text, device["device_token"], device["participant_id"]):
            assert secret not in flat, span.name


async def test_one_trace_follows_an_erasure_from_the_phone_into_every_stores_consumer(stack):
    """SRE sees an erasure request go from the gateway through rights, over Kafka, into
    each store's erasure consumer, in one trace; no span names the participant."""
    from support.apps import bearer, enrol_devices, running_platform, tenant_known_to_rights

    spans = {name: InMemorySpanExporter() for name in ("enrolment", "dialogue", "rights", "analytics")}
    async with running_platform(stack, spans=spans) as platform:
        tenant = await create_tenant(platform.gateway)
        await tenant_known_to_rights(platform, tenant)
        (device,) = await enrol_devices(platform, tenant, 1)
        spans["enrolment"].clear()
        asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                            headers=bearer(device["device_token"]))
        assert asked.status_code == 202, asked.text
        [request] = [s for s in spans["enrolment"].get_finished_spans()
                     if s.kind.name == "SERVER" and s.parent is None and "rights-requests" in s.name]

        async def consumers_in_the_trace():
            found = {name: [s for s in exporter.get_finished_spans()
                            if s.kind.name == "CONSUMER" and s.context.trace_id == request.context.trace_id
                            and "erasure-requested" in s.name]
                     for name, exporter in spans.items() if name != "rights"}
            return found if all(found.values()) else None

        assert await eventually(consumers_in_the_trace, timeout=60)

    for exporter in spans.values():
        for span in exporter.get_finished_spans():
            flat = repr(dict(span.attributes or {})) + span.name
            for secret in (device["device_token"], device["participant_id"], asked.json()["status_secret"]):
                assert secret not in flat, span.name
