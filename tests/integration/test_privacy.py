"""No personal data, token, code or full IP address in spans or logs (DESIGN.md §1)."""

from __future__ import annotations

import pytest

from support.apps import create_code, create_tenant, enrol

pytestmark = pytest.mark.connected

CLIENT_IP = "203.0.113.7"  # the address support.apps.running sends from


async def test_spans_metrics_and_logs_carry_no_token_code_or_full_address(gateway, spans, capfd):
    spans.clear()
    tenant = await create_tenant(gateway)
    code = await create_code(gateway, tenant)
    device = (await enrol(gateway, code["code"])).json()
    await gateway.get("/v1/me", headers={"Authorization": f"Bearer {device['device_token']}"})
    await gateway.delete(
        f"/v1/tenants/{tenant['tenant_id']}/codes/{code['code']}",
        headers={"Authorization": f"Bearer {tenant['api_key']}"},
    )

    finished = spans.get_finished_spans()
    assert any(s.attributes.get("http.route") or s.attributes.get("url.path") for s in finished)
    everything = repr([(s.name, dict(s.attributes or {}), [e.attributes for e in s.events]) for s in finished])
    for secret in (device["device_token"], tenant["api_key"], code["code"], code["display"], CLIENT_IP):
        assert secret not in everything
    assert "203.0.113.0/24" in everything  # the truncated network is what SRE gets

    exposed = (await gateway.get("/metrics")).text
    assert "tessera_enrolment_attempts_total" in exposed
    for secret in (device["device_token"], tenant["api_key"], code["code"], CLIENT_IP, tenant["tenant_id"]):
        assert secret not in exposed

    logged = capfd.readouterr()
    for secret in (device["device_token"], tenant["api_key"], code["code"], CLIENT_IP):
        assert secret not in logged.out + logged.err
