"""Kafka credentials for a tenant's own systems: issued, listed, rotated and revoked
with the tenant's API key.

A credential is a SASL/SCRAM-SHA-512 user, ``tenant-<tenant_id>-<credential_id>``,
whose ACLs let it read topics starting ``tenant.<tenant_id>.`` in consumer groups
starting with the same prefix, and nothing else (tessera_common.kafka_access). Its
password is shown once, when issued or rotated; Kafka keeps only a salted verifier and
this service only the user's name.

Order of changes, so that a failure leaves nothing half done:
- issue: the user and its ACLs on the broker first, then the row; a row that cannot be
  written takes the user away again.
- revoke: the ACLs and the user go first (an open connection loses its access with the
  ACLs, at its next request; a new one no longer authenticates), then the row is marked.
  A broker that cannot be reached is 503 and nothing changed; revoking again is safe.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel, Field, StringConstraints

from tessera_common.http import (
    StrictBody,
    api_key_caller,
    errors,
    problem,
)
from tessera_common.kafka_access import (
    MECHANISM,
    KafkaAccessAdmin,
    new_password,
    acl_bindings,
    tenant_grants,
    tenant_topic_prefix,
    tenant_username,
)
from tessera_common.events import Topics
from tessera_common.logs import get_logger
from tessera_common.secrets import new_id
from tessera_common.tenant_access import AccessSource
from tessera_enrolment.api_keys import ApiKeyStore
from tessera_enrolment.store import EnrolmentStore

log = get_logger(__name__)

#: Credentials a tenant may hold at once (not revoked): enough for a few systems and an
#: overlap while one is replaced, few enough that a leaked API key cannot mint a crowd.
MAX_ACTIVE = 10

CredentialIdPath = Annotated[str, Path(pattern=r"^kc_[A-Za-z0-9_-]{8,40}$", description="the credential's ID")]


class KafkaCredentialIn(StrictBody):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True,
                                           pattern=r"^[^\x00-\x1f\x7f]+$")] = Field(
        description="what the tenant calls the system that uses it, e.g. 'data warehouse'")


class KafkaCredentialOut(BaseModel):
    credential_id: str
    name: str
    username: str = Field(description="the SASL user name")
    status: Literal["active", "revoked"]
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


class KafkaConnection(BaseModel):
    """How to connect: what a Kafka client's configuration needs."""

    bootstrap_servers: str
    security_protocol: Literal["SASL_PLAINTEXT"] = "SASL_PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512"] = MECHANISM
    topic: str = Field(description="the tenant's topic (contract: /asyncapi.json)")
    topic_prefix: str = Field(description="every topic this credential may read starts with it")
    group_prefix: str = Field(description="the consumer groups this credential may use start with it")


class KafkaCredentialIssued(KafkaCredentialOut):
    password: str = Field(description="shown once: only a salted verifier is kept")
    connection: KafkaConnection


class KafkaCredentialList(BaseModel):
    credentials: list[KafkaCredentialOut]


def _out(row: dict) -> KafkaCredentialOut:
    return KafkaCredentialOut(
        credential_id=row["credential_id"], name=row["name"], username=row["username"],
        status="revoked" if row["revoked_at"] else "active", created_at=row["created_at"],
        rotated_at=row["rotated_at"], revoked_at=row["revoked_at"])


def build_kafka_credentials_router(store: EnrolmentStore, admin: KafkaAccessAdmin | None,
                                   tenant_bootstrap_servers: str, keys: AccessSource | None = None) -> APIRouter:
    """``admin``: the provisioner's admin client (None where the broker has no
    authentication, where every route answers 503 ``kafka_credentials_unavailable``)."""
    router = APIRouter(tags=["tenant"])

    # The tenant's systems that read its topic: keys with the scope streams.
    AuthorisedTenant = Annotated[str, Depends(api_key_caller(keys or ApiKeyStore(store.database), "streams"))]

    def provisioner() -> KafkaAccessAdmin:
        if admin is None:
            raise problem(503, "kafka_credentials_unavailable",
                          "this deployment's broker issues no tenant credentials")
        return admin

    def connection(tenant_id: str) -> KafkaConnection:
        prefix = tenant_topic_prefix(tenant_id)
        return KafkaConnection(bootstrap_servers=tenant_bootstrap_servers, topic=Topics.for_tenant(tenant_id),
                               topic_prefix=prefix, group_prefix=prefix)

    async def existing(tenant_id: str, credential_id: str) -> dict:
        row = await store.kafka_credential(tenant_id, credential_id)
        if row is None:
            raise problem(404, "credential_not_found", "this tenant has no such Kafka credential")
        return row

    @router.post("/v1/tenants/{tenant_id}/kafka-credentials", status_code=status.HTTP_201_CREATED,
                 responses=errors(409, 503, e409=f"the tenant has {MAX_ACTIVE} active credentials "
                                                 "(`too_many_credentials`); revoke one first"))
    async def issue(tenant_id: AuthorisedTenant, body: KafkaCredentialIn) -> KafkaCredentialIssued:
        """A new credential for the tenant's systems to read the tenant's topic."""
        kafka = provisioner()
        if await store.count_kafka_credentials(tenant_id) >= MAX_ACTIVE:
            raise problem(409, "too_many_credentials", f"at most {MAX_ACTIVE} active Kafka credentials; revoke one")
        credential_id = new_id("kc")
        username = tenant_username(tenant_id, credential_id)
        password = new_password()
        row = {"tenant_id": tenant_id, "credential_id": credential_id, "name": body.name, "username": username,
               "created_at": datetime.now(UTC), "rotated_at": None, "revoked_at": None}
        try:
            await kafka.upsert_user(username, password)
            await kafka.grant(acl_bindings(username, tenant_grants(tenant_id)))
        except Exception as error:
            log.warning("kafka_credential_not_issued", tenant_id=tenant_id, error=type(error).__name__)
            await _take_away(kafka, username)
            raise problem(503, "broker_unavailable", "the broker could not be reached; try again") from None
        try:
            recorded = await store.add_kafka_credential(row, MAX_ACTIVE)
        except BaseException:
            await _take_away(kafka, username)
            raise
        if not recorded:  # another issue took the last place meanwhile
            await _take_away(kafka, username)
            raise problem(409, "too_many_credentials", f"at most {MAX_ACTIVE} active Kafka credentials; revoke one")
        log.info("kafka_credential_issued", tenant_id=tenant_id, credential_id=credential_id)
        return KafkaCredentialIssued(**_out(row).model_dump(), password=password.get_secret_value(),
                                     connection=connection(tenant_id))

    @router.get("/v1/tenants/{tenant_id}/kafka-credentials")
    async def list_credentials(tenant_id: AuthorisedTenant) -> KafkaCredentialList:
        """The tenant's credentials, revoked ones too; never a password."""
        return KafkaCredentialList(credentials=[_out(r) for r in await store.list_kafka_credentials(tenant_id)])

    @router.post("/v1/tenants/{tenant_id}/kafka-credentials/{credential_id}/rotation",
                 responses=errors(404, 409, 503, e404="this tenant has no such credential (`credential_not_found`)",
                                  e409="the credential is revoked (`credential_revoked`)"))
    async def rotate(tenant_id: AuthorisedTenant, credential_id: CredentialIdPath) -> KafkaCredentialIssued:
        """A new password for the same user: the old one no longer authenticates a new
        connection. For a change-over without a gap, issue a second credential, move
        the systems to it, then revoke the first."""
        kafka = provisioner()
        row = await existing(tenant_id, credential_id)
        if row["revoked_at"] is not None:
            raise problem(409, "credential_revoked", "a revoked credential cannot be rotated; issue a new one")
        password = new_password()
        try:
            await kafka.upsert_user(row["username"], password)
        except Exception as error:
            log.warning("kafka_credential_not_rotated", tenant_id=tenant_id, error=type(error).__name__)
            raise problem(503, "broker_unavailable", "the broker could not be reached; try again") from None
        row["rotated_at"] = datetime.now(UTC)
        await store.mark_kafka_credential(tenant_id, credential_id, "rotated_at", row["rotated_at"])
        log.info("kafka_credential_rotated", tenant_id=tenant_id, credential_id=credential_id)
        return KafkaCredentialIssued(**_out(row).model_dump(), password=password.get_secret_value(),
                                     connection=connection(tenant_id))

    @router.delete("/v1/tenants/{tenant_id}/kafka-credentials/{credential_id}",
                   status_code=status.HTTP_204_NO_CONTENT,
                   responses=errors(404, 503, e404="this tenant has no such credential (`credential_not_found`)"))
    async def revoke(tenant_id: AuthorisedTenant, credential_id: CredentialIdPath) -> Response:
        """The credential stops working: its ACLs and its user are deleted from the
        broker. Revoking a revoked credential again is a no-op."""
        kafka = provisioner()
        row = await existing(tenant_id, credential_id)
        try:
            await kafka.revoke_all(row["username"])
            await kafka.delete_user(row["username"])
        except Exception as error:
            log.warning("kafka_credential_not_revoked", tenant_id=tenant_id, error=type(error).__name__)
            raise problem(503, "broker_unavailable", "the broker could not be reached; try again") from None
        await store.mark_kafka_credential(tenant_id, credential_id, "revoked_at", datetime.now(UTC))
        log.info("kafka_credential_revoked", tenant_id=tenant_id, credential_id=credential_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


async def _take_away(kafka: KafkaAccessAdmin, username: str) -> None:
    """Best effort: a user whose issue failed must not keep access it was given."""
    try:
        await kafka.revoke_all(username)
        await kafka.delete_user(username)
    except Exception as error:
        log.warning("kafka_credential_cleanup_failed", error=type(error).__name__)
