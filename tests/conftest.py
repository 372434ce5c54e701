"""Session fixtures: one real Kafka broker and one real PostgreSQL cluster.

Default: Apache Kafka (KRaft, Maven Central jars) and PostgreSQL 15 (Debian's server
binaries) as local processes on free ports, started by deploy/local's own launcher.
With ``TESSERA_TEST_STACK=testcontainers`` (where Docker exists) the same fixtures come
from testcontainers: Apache Kafka's image and PostgreSQL's.

Every test that runs a service gets a database of its own (:meth:`Stack.database`),
with the service's two roles, and the service's own Kafka principal, as in production.
The local broker runs SASL/SCRAM with ACLs: tests read and write it as its
administrator (:attr:`Stack.kafka`), services as themselves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import pytest

from support.kafka import start_group_at_end
from tessera_common.kafka_access import KafkaCredentials, KafkaEndpoint


@dataclass(frozen=True)
class Stack:
    #: The broker, with its administrator's credentials (none without authentication).
    kafka: KafkaEndpoint
    #: ``provision(service, database)`` → the service's database settings.
    provision: Callable[[str, str], dict[str, str]]
    superuser_url: str
    #: Each service's own principal (tessera_common.kafka_access), and ``provisioner``.
    kafka_principals: dict[str, KafkaCredentials] = field(default_factory=dict)
    #: Where the cluster and the broker keep their files (for byte scans of what is on
    #: disk); None where they live in containers.
    postgres_data_dir: Path | None = None
    kafka_log_dir: Path | None = None

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    def principal(self, service: str) -> dict[str, str]:
        """``service``'s Kafka principal as settings (``kafka_username``, ``kafka_password``;
        for enrolment also the provisioner's)."""
        credentials = self.kafka_principals.get(service)
        if credentials is None:
            return {}
        settings = {"kafka_username": credentials.username, "kafka_password": credentials.password.get_secret_value()}
        if service == "enrolment":  # it also issues tenants' credentials, as the provisioner
            provisioner = self.kafka_principals["provisioner"]
            settings.update(kafka_provisioner_username=provisioner.username,
                            kafka_provisioner_password=provisioner.password.get_secret_value())
        return settings

    def database(self, service: str) -> dict[str, str]:
        """A fresh database for ``service``: ``database_url`` and ``database_owner_url``,
        and a consumer group of its own (``consumer_group_suffix``) that starts at the
        current end of every topic: a service on this database reads this test's events
        only, and no app of another test ever reads them. With them, the service's
        Kafka principal (:meth:`principal`)."""
        name = f"test_{service}_{uuid4().hex[:10]}"
        settings = self.provision(service, name)
        _in_a_thread(start_group_at_end(self.kafka, f"tessera-{service}.{name}"))
        return {**settings, "consumer_group_suffix": f".{name}", **self.principal(service)}


def _in_a_thread(coroutine) -> None:
    """Run ``coroutine`` to the end from sync code that may itself be inside a running
    event loop (an async test calling :meth:`Stack.database`)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


def _local_stack(root: Path) -> Iterator[Stack]:
    from tessera_devstack.postgres import PostgresConfig, start_postgres
    from tessera_devstack.processes import KafkaConfig, provision_kafka, start_kafka

    config = KafkaConfig(root / "kafka")
    kafka = start_kafka(config)
    try:
        postgres = start_postgres(PostgresConfig(root / "postgres", durable=False))
        try:
            endpoint, principals = provision_kafka(config)
            yield Stack(endpoint, postgres.database, postgres.superuser_url, principals,
                        postgres_data_dir=postgres.data_dir, kafka_log_dir=root / "kafka" / "log")
        finally:
            postgres.stop()
            postgres.discard()
    finally:
        kafka.stop()


def _testcontainers_stack() -> Iterator[Stack]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    from tessera_devstack.postgres import provision

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, PostgresContainer("postgres:15") as pg:
        superuser = pg.get_connection_url(driver=None)
        yield Stack(KafkaEndpoint(kafka.get_bootstrap_server()),
                    lambda service, database: provision(superuser, service, database), superuser)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if os.environ.get("TESSERA_TEST_STACK", "local") == "testcontainers":
        yield from _testcontainers_stack()
    else:
        yield from _local_stack(tmp_path_factory.mktemp("stack"))
