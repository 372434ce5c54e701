"""SRE follows one enrolment from the gateway's HTTP span, over Kafka, into analytics."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.apps import create_code, create_tenant, enrol, enrolment_settings, running, unique_db
from support.kafka import eventually
from tessera_analytics.app import AnalyticsSettings
from tessera_analytics.app import create_app as create_analytics
from tessera_enrolment.app import create_app as create_gateway

pytestmark = pytest.mark.connected


async def test_one_trace_runs_from_the_enrolment_request_into_the_analytics_consumer(stack):
    gateway_spans, analytics_spans = InMemorySpanExporter(), InMemorySpanExporter()
    gateway_app = create_gateway(enrolment_settings(stack), span_exporter=gateway_spans)
    analytics_app = create_analytics(
        AnalyticsSettings(kafka_bootstrap_servers=stack.kafka_bootstrap, mongo_url=stack.mongo_url,
                          mongo_database=unique_db("analytics"), environment="test"),
        span_exporter=analytics_spans,
    )
    async with running(gateway_app) as gateway, running(analytics_app):
        tenant = await create_tenant(gateway)
        code = await create_code(gateway, tenant)
        gateway_spans.clear()
        assert (await enrol(gateway, code["code"])).status_code == 201
        [request] = [s for s in gateway_spans.get_finished_spans()
                     if s.kind.name == "SERVER" and "enrolments" in s.name]

        async def consumer_span_in_the_same_trace():
            return [s for s in analytics_spans.get_finished_spans()
                    if s.kind.name == "CONSUMER" and s.context.trace_id == request.context.trace_id]

        [consumed] = await eventually(consumer_span_in_the_same_trace)

    assert "device-enrolled" in consumed.name
    publishes = [s for s in gateway_spans.get_finished_spans()
                 if s.kind.name == "PRODUCER" and s.context.trace_id == request.context.trace_id]
    assert publishes, "the publish span belongs to the request's trace"
