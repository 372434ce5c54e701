"""Session fixtures: one real Kafka broker and one real MongoDB-protocol store.

Default: Apache Kafka (KRaft, Maven Central jars) and FerretDB (SQLite) as local
processes on free ports, started by deploy/local's own launcher. With
``TESSERA_TEST_STACK=testcontainers`` (where Docker exists) the same fixtures come from
testcontainers: Apache Kafka's image and a real MongoDB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Stack:
    kafka_bootstrap: str
    mongo_url: str


def _local_stack(root: Path) -> Iterator[Stack]:
    from tessera_devstack.processes import (
        FerretConfig,
        KafkaConfig,
        start_ferretdb,
        start_kafka,
        wait_for_kafka,
    )

    kafka = start_kafka(KafkaConfig(root / "kafka"))
    try:
        ferret = start_ferretdb(FerretConfig(root / "ferretdb"))
        try:
            bootstrap = f"127.0.0.1:{kafka.port}"
            wait_for_kafka(bootstrap)
            yield Stack(bootstrap, f"mongodb://127.0.0.1:{ferret.port}/")
        finally:
            ferret.stop()
    finally:
        kafka.stop()


def _testcontainers_stack() -> Iterator[Stack]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, MongoDbContainer("mongo:7") as mongo:
        yield Stack(kafka.get_bootstrap_server(), mongo.get_connection_url())


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if os.environ.get("TESSERA_TEST_STACK", "local") == "testcontainers":
        yield from _testcontainers_stack()
    else:
        yield from _local_stack(tmp_path_factory.mktemp("stack"))
