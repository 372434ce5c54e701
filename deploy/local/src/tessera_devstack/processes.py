"""Start and stop the Docker-free stack's servers as local processes.

Apache Kafka runs from Maven Central jars on the machine's JDK 17 (KRaft, one node
that is both broker and controller), fetched once into the repository's ignored
``.cache/`` and reused. PostgreSQL 15 runs from Debian's server binaries as a private
cluster (see :mod:`tessera_devstack.postgres`). Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
DEPLOY_LOCAL = REPO / "deploy" / "local"
CACHE = Path(os.environ.get("TESSERA_CACHE_DIR", REPO / ".cache"))
KAFKA_LIBS = CACHE / "kafka" / "libs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def ensure_kafka_jars() -> Path:
    """Resolve ``org.apache.kafka:kafka_2.13`` and its runtime dependencies with Maven."""
    marker = KAFKA_LIBS / ".complete"
    if not marker.exists():
        KAFKA_LIBS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(DEPLOY_LOCAL / "kafka" / "pom.xml"),
                "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-DoutputDirectory={KAFKA_LIBS}",
            ],
            check=True,
        )
        marker.touch()
    return KAFKA_LIBS


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    log_path: Path
    port: int = 0
    stop_signal: int = signal.SIGTERM

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def spawn(
    name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None, port: int = 0,
    user: int | None = None, group: int | None = None,
) -> Server:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env=env, user=user, group=group,
        extra_groups=[] if user is not None else None,
    )
    log.close()
    return Server(name, process, log_path, port)


def wait_for_port(server: Server, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.tail()}")
        if port_open(port):
            return
        time.sleep(0.2)
    server.stop()
    raise TimeoutError(f"{server.name} did not listen on {port} within {timeout}s:\n{server.tail()}")


@dataclass
class KafkaConfig:
    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    heap: str = "512m"

    @property
    def admin_password(self) -> str:
        """The broker administrator's password, made once per data folder and kept
        beside it (readable by its owner only): the SCRAM credential Kafka stores for
        ``admin`` is written when the log folder is formatted."""
        secret = self.data_dir / "admin.secret"
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(secrets.token_urlsafe(32))
        return secret.read_text().strip()


#: The broker's administrator (its super user). Services and tenants get principals
#: of their own (tessera_common.kafka_access).
KAFKA_ADMIN = "admin"


def start_kafka(config: KafkaConfig, timeout: float = 90.0) -> Server:
    """One KRaft node with SASL/SCRAM-SHA-512 on its client listener and PLAIN on its
    controller listener (KRaft reads SCRAM users from its own metadata, which the
    controller needs before it has any), and Kafka's ``StandardAuthorizer`` denying
    whatever no ACL allows. Nothing anonymous gets in."""
    libs = ensure_kafka_jars()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    properties = config.data_dir / "server.properties"
    log_dirs = config.data_dir / "log"
    password = config.admin_password
    if (log_dirs / "meta.properties").exists() and not (config.data_dir / "admin.formatted").exists():
        # A folder formatted before the broker had users: its metadata holds no admin.
        shutil.rmtree(log_dirs)
    scram_login = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                   f'username="{KAFKA_ADMIN}" password="{password}";')
    plain_login = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
                   f'username="{KAFKA_ADMIN}" password="{password}" user_{KAFKA_ADMIN}="{password}";')
    properties.touch(mode=0o600)
    properties.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{config.controller_port}",
                f"listeners=CLIENT://127.0.0.1:{config.port},CONTROLLER://127.0.0.1:{config.controller_port}",
                f"advertised.listeners=CLIENT://127.0.0.1:{config.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=CLIENT",
                "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512",
                f"listener.name.client.scram-sha-512.sasl.jaas.config={scram_login}",
                "sasl.mechanism.controller.protocol=PLAIN",
                "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                f"listener.name.controller.plain.sasl.jaas.config={plain_login}",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users=User:{KAFKA_ADMIN}",
                "allow.everyone.if.no.acl.found=false",
                f"log.dirs={log_dirs}",
                "num.partitions=3",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # Topics are created by principals allowed to (CREATE ACLs), never as a
                # side effect of a read.
                "auto.create.topics.enable=false",
                "",
            ]
        )
    )
    java = shutil.which("java") or "java"
    classpath = f"{libs}/*"
    if not (log_dirs / "meta.properties").exists():
        subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
             "-t", uuid.uuid4().hex[:22], "-c", str(properties), "--ignore-formatted",
             "--add-scram", f"SCRAM-SHA-512=[name={KAFKA_ADMIN},password={password}]"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        (config.data_dir / "admin.formatted").touch()
    server = spawn(
        "kafka",
        [java, f"-Xmx{config.heap}", f"-Xms{config.heap}", "-XX:+UseG1GC",
         "-Djava.awt.headless=true", "-cp", classpath, "kafka.Kafka", str(properties)],
        config.data_dir / "kafka.log",
        port=config.port,
    )
    wait_for_port(server, config.port, timeout)
    return server


def kafka_admin_credentials(config: KafkaConfig):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    from tessera_common.kafka_access import KafkaCredentials

    return KafkaCredentials(KAFKA_ADMIN, SecretStr(config.admin_password))


def wait_for_kafka(bootstrap: str, credentials=None, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """The port opens before the broker can serve metadata; wait for the latter."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    from tessera_common.kafka_access import aiokafka_options

    async def probe() -> None:
        deadline = time.monotonic() + timeout
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                        **aiokafka_options(credentials))
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()

    asyncio.run(probe())


def provision_kafka(config: KafkaConfig):  # type: ignore[no-untyped-def]
    """Once the broker started from ``config`` serves: every platform topic, and each
    service's principal with a new password and its ACLs. Returns the administrator's
    endpoint and the principals by service (``provisioner`` too)."""
    from tessera_common.kafka_access import KafkaAccessAdmin, KafkaEndpoint, provision_platform

    admin = KafkaEndpoint(f"127.0.0.1:{config.port}", kafka_admin_credentials(config))
    wait_for_kafka(admin.bootstrap_servers, admin.credentials)
    return admin, provision_platform(KafkaAccessAdmin(admin.bootstrap_servers, admin.credentials))


def principal_env(credentials) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A service's principal as its ``TESSERA_KAFKA_*`` variables."""
    return {"TESSERA_KAFKA_USERNAME": credentials.username,
            "TESSERA_KAFKA_PASSWORD": credentials.password.get_secret_value()}
