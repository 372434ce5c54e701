"""Analytics' HTTP routes: figures that respect the minimum group size (tenant API
key), and what the rights service asks about a participant (internal token)."""


from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from tessera_common.events import FormFactor, Platform
from tessera_common.http import (
    BearerCredentials,
    TenantIdPath,
    authorise_tenant,
    internal_caller,
    problem,
    require_bearer,
)
from tessera_common.secrets import erased_marker
from tessera_analytics import domain
from tessera_analytics.store import STORE_NAME, AnalyticsStore

ParticipantIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the participant's ID")]


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


class ContributionOut(BaseModel):
    platform: Platform
    form_factor: FormFactor


class ContributionDataOut(BaseModel):
    """What analytics holds about a participant, for their access request."""

    store: str
    categories: list[str]
    records: list[ContributionOut]
    objected: bool = Field(description="whether they objected to analysis (and so count in no figure)")


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


def build_internal_router(store: AnalyticsStore, internal_token: str, marker_key: str) -> APIRouter:
    """Only other Tessera services reach these, with the internal token."""
    router = APIRouter(prefix="/internal/v1", tags=["internal"],
                       dependencies=[Depends(internal_caller(internal_token))])

    @router.get("/tenants/{tenant_id}/participants/{participant_id}/data")
    async def participant_data(tenant_id: TenantIdPath, participant_id: ParticipantIdPath) -> ContributionDataOut:
        """The participant's contribution to this tenant's figures, and whether they
        objected; another tenant's participant has none and did not."""
        found = await store.contribution(tenant_id, participant_id)
        return ContributionDataOut(
            store=STORE_NAME, categories=["device_facts", "aggregates"],
            records=[] if found is None else [ContributionOut(platform=found["platform"],
                                                              form_factor=found["form_factor"])],
            objected=await store.is_objected(erased_marker(marker_key, participant_id), tenant_id),
        )

    return router
