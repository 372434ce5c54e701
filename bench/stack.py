"""The stack every benchmark starts for itself: a real Kafka and a real PostgreSQL
cluster (durable settings, as ``make run`` has them), with each service's database."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tessera_devstack.postgres import PostgresConfig, PostgresServer, start_postgres
from tessera_common.kafka_access import KafkaCredentials, KafkaEndpoint
from tessera_devstack.processes import KafkaConfig, Server, principal_env, provision_kafka, spawn, start_kafka


@dataclass
class BenchStack:
    root: Path
    #: The broker as its administrator (what a benchmark's own clients use).
    kafka: KafkaEndpoint
    postgres: PostgresServer
    servers: list[Server] = field(default_factory=list)
    databases: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Each service's own Kafka principal.
    principals: dict[str, KafkaCredentials] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    def database(self, service: str) -> dict[str, str]:
        if service not in self.databases:
            self.databases[service] = self.postgres.database(service)
        return self.databases[service]

    def env(self, service: str, **extra: str) -> dict[str, str]:
        urls = self.database(service)
        return {**os.environ, "TESSERA_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "TESSERA_DATABASE_URL": urls["database_url"], "TESSERA_DATABASE_OWNER_URL": urls["database_owner_url"],
                **(principal_env(self.principals[service]) if service in self.principals else {}),
                "TESSERA_LOG_LEVEL": "WARNING", **extra}

    def spawn_service(self, service: str, port: int, **extra: str) -> Server:
        bin_dir = Path(sys.executable).parent
        command = shutil.which(f"tessera-{service}", path=str(bin_dir)) or f"tessera-{service}"
        server = spawn(service, [command], self.root / f"{service}-{port}.log",
                       env=self.env(service, TESSERA_PORT=str(port), **extra), port=port)
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.postgres.stop()
        self.postgres.discard()


def start_stack(root: Path) -> BenchStack:
    config = KafkaConfig(root / "kafka")
    kafka = start_kafka(config)
    try:
        admin, principals = provision_kafka(config)
        postgres = start_postgres(PostgresConfig(root / "postgres", durable=True))
    except BaseException:
        kafka.stop()
        raise
    return BenchStack(root, admin, postgres, [kafka, postgres.server], principals=principals)
