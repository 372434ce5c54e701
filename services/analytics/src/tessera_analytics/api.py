"""Analytics' HTTP routes (tenant API key): figures that respect the minimum group size."""


from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from tessera_common.http import BearerCredentials, TenantIdPath, authorise_tenant, problem, require_bearer
from tessera_analytics import domain
from tessera_analytics.store import AnalyticsStore



class CellOut(BaseModel):
    platform: str
    form_factor: str
    count: int | None = Field(description="null when suppressed")
    suppressed: bool
    reason: str | None = None


class DeviceStatsOut(BaseModel):
    tenant_id: str
    min_group_size: int
    total: int | None
    total_suppressed: bool
    cells: list[CellOut]


def build_router(store: AnalyticsStore) -> APIRouter:
    router = APIRouter(tags=["tenant"])

    async def tenant_key(tenant_id: TenantIdPath, credentials: BearerCredentials) -> str:
        await authorise_tenant(require_bearer(credentials), tenant_id, store.api_key_hash)
        return tenant_id

    @router.get("/v1/tenants/{tenant_id}/stats/devices")
    async def device_stats(tenant_id: Annotated[str, Depends(tenant_key)]) -> DeviceStatsOut:
        k = await store.min_group_size(tenant_id)
        if k is None:  # authorised a moment ago, so only a race with erasure of the tenant
            raise problem(404, "tenant_not_found", "unknown tenant")
        figures = domain.device_figures(await store.device_counts(tenant_id), k)
        return DeviceStatsOut(
            tenant_id=tenant_id,
            min_group_size=figures.k,
            total=figures.total,
            total_suppressed=figures.total_suppressed,
            cells=[CellOut(**cell.__dict__) for cell in figures.cells],
        )

    return router
