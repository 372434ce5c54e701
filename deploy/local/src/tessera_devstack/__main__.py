"""``tessera-devstack``: the whole platform on this machine, without Docker.

``run``   start Kafka, PostgreSQL (a private cluster with each service's database and
          roles), Jaeger (the trace view every service exports to) and the four
          services on fixed ports (each overridable), print the URLs and the operator
          key, restart whatever dies (with back-off, saying so), and stop everything on
          Ctrl-C.
``keys``  print a fresh operator key and gateway key pair as ``export`` lines
          (for docker compose or a hand-run service).
``fetch`` fetch Kafka's jars into .cache/, build Jaeger there once, and check
          PostgreSQL's server binaries are there (what ``run`` does first).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from tessera_common.identity import generate_signing_key
from tessera_devstack.processes import (
    REPO,
    KafkaConfig,
    Server,
    spawn,
    ensure_kafka_jars,
    free_port,
    port_open,
    principal_env,
    provision_kafka,
    start_kafka,
)
from tessera_devstack.jaeger import JaegerConfig, ensure_jaeger, start_jaeger
from tessera_devstack.postgres import PostgresConfig, server_binaries, start_postgres

SERVICES = ("enrolment", "dialogue", "rights", "analytics")


class StackSettings(BaseSettings):
    """Ports of ``make run``; each can be overridden, e.g. ``TESSERA_KAFKA_PORT=19092``."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_", extra="ignore")

    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    store_port: int = 5432
    enrolment_port: int = 8001
    dialogue_port: int = 8002
    rights_port: int = 8003
    analytics_port: int = 8004
    #: Jaeger's UI and query API, and where services send their traces (OTLP/HTTP).
    #: Jaeger's usual ports, unless taken: then free ones (printed).
    jaeger_port: int = 16686
    jaeger_otlp_port: int = 4318
    run_dir: Path = REPO / ".run"


def _keys() -> dict[str, str]:
    private, public = generate_signing_key()
    return {
        "TESSERA_OPERATOR_KEY": secrets.token_urlsafe(32),
        "TESSERA_INTERNAL_TOKEN": secrets.token_urlsafe(32),
        "TESSERA_ERASED_MARKER_KEY": secrets.token_urlsafe(32),
        "TESSERA_DATA_KEY_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TESSERA_RECEIPT_SIGNING_KEY": generate_signing_key()[0],
        "TESSERA_CONSOLE_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TESSERA_GATEWAY_SIGNING_KEY": private,
        "TESSERA_GATEWAY_PUBLIC_KEY": public,
        # docker-compose.yml's database passwords (hex: they go into URLs as they are).
        **{f"TESSERA_PG_{role}_PASSWORD": secrets.token_hex(24) for role in (
            "SUPERUSER", *(f"{s.upper()}{suffix}" for s in SERVICES for suffix in ("", "_OWNER")))},
    }


def _wait_http(port: int, path: str, timeout: float) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


@dataclass
class Supervised:
    """One process of the platform and how to start it again.

    ``make run`` is what a developer leaves running for hours: a service that dies (a
    bug, a kill -9, the OOM killer) is started again rather than taking the platform
    down with it, after a back-off that doubles with each restart in a row (1 s, 2 s,
    4 s… at most 30 s) and starts over once the process has stayed up for a minute,
    so a process that dies at once does not spin the machine. Every death and
    restart is printed, with the last lines of the process's log."""

    name: str
    start: Callable[[], Server]
    pid_file: Path
    server: Server | None = None
    restarts_in_a_row: int = 0
    started_at: float = field(default_factory=time.monotonic)
    #: While the process is down: when its next start is due.
    due: float | None = None

    BACKOFF_FIRST = 1.0
    BACKOFF_CAP = 30.0
    STAYED_UP = 60.0

    def launch(self, running: Server | None = None) -> None:
        """Start the process (or adopt ``running``, already started) and record its pid."""
        self.server = running or self.start()
        self.started_at = time.monotonic()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{self.server.process.pid}\n")

    def check(self, now: float) -> None:
        """Notice a death and schedule the restart; restart when it is due."""
        if self.due is None:
            if self.server is None or self.server.process.poll() is None:
                return
            if now - self.started_at >= self.STAYED_UP:
                self.restarts_in_a_row = 0
            print(f"{self.name} stopped unexpectedly (exit code {self.server.process.returncode}); "
                  f"restarting in {self._backoff():g} s. Last lines of its log:\n{self.server.tail(15)}",
                  file=sys.stderr, flush=True)
            self.due = now + self._backoff()
            return
        if now < self.due:
            return
        self.restarts_in_a_row += 1
        try:
            self.launch()
        except Exception as exc:  # it would not start: try again after the next back-off
            self.due = now + self._backoff()
            print(f"{self.name} did not start again ({type(exc).__name__}: {exc}); "
                  f"trying again in {self._backoff():g} s", file=sys.stderr, flush=True)
            return
        self.due = None
        print(f"{self.name} restarted (pid {self.server.process.pid}, restart {self.restarts_in_a_row} in a row)",
              flush=True)

    def _backoff(self) -> float:
        return min(self.BACKOFF_CAP, self.BACKOFF_FIRST * 2 ** self.restarts_in_a_row)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def run(settings: StackSettings) -> int:
    ports = {
        "kafka": settings.kafka_port, "kafka controller": settings.kafka_controller_port,
        "store": settings.store_port, **{s: getattr(settings, f"{s}_port") for s in SERVICES},
    }
    busy = [f"{name} ({port})" for name, port in ports.items() if port_open(port)]
    if busy:
        print(f"ports already in use: {', '.join(busy)}; stop what holds them or set TESSERA_<NAME>_PORT",
              file=sys.stderr)
        return 1

    generated = [k for k in ("TESSERA_OPERATOR_KEY",) if not os.environ.get(k)]
    keys = _keys()
    env = dict(os.environ)
    for name in ("TESSERA_OPERATOR_KEY", "TESSERA_INTERNAL_TOKEN"):
        env.setdefault(name, keys[name])
    if not env.get("TESSERA_GATEWAY_SIGNING_KEY"):
        env["TESSERA_GATEWAY_SIGNING_KEY"] = keys["TESSERA_GATEWAY_SIGNING_KEY"]
        env["TESSERA_GATEWAY_PUBLIC_KEY"] = keys["TESSERA_GATEWAY_PUBLIC_KEY"]

    supervised: list[Supervised] = []
    pids = settings.run_dir / "pids"

    def supervise(name: str, start: Callable[[], Server], running: Server | None = None) -> Supervised:
        process = Supervised(name, start, pids / f"{name}.pid")
        process.launch(running)
        supervised.append(process)
        return process

    def stop_all(*_: object) -> None:
        for process in reversed(supervised):
            process.stop()

    service_env: dict[str, dict[str, str]] = {}

    # Ctrl-C and SIGTERM both stop everything; SIGINT is set explicitly because a
    # parent that ignores it (a background job, some CI shells) would pass that on.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print("starting Kafka, PostgreSQL and Jaeger (the first run fetches Kafka's jars and builds Jaeger)...")
        jaeger_config = JaegerConfig(
            settings.run_dir / "jaeger",
            query_port=settings.jaeger_port if not port_open(settings.jaeger_port) else free_port(),
            otlp_port=settings.jaeger_otlp_port if not port_open(settings.jaeger_otlp_port) else free_port())
        supervise("jaeger", lambda: start_jaeger(jaeger_config))
        env.setdefault("TESSERA_OTLP_ENDPOINT", jaeger_config.otlp_endpoint)
        kafka_config = KafkaConfig(settings.run_dir / "kafka", settings.kafka_port, settings.kafka_controller_port)
        supervise("kafka", lambda: start_kafka(kafka_config))
        postgres_config = PostgresConfig(settings.run_dir / "postgres", settings.store_port)
        postgres = start_postgres(postgres_config)
        supervise("postgresql", lambda: start_postgres(postgres_config).server, running=postgres.server)
        for service in SERVICES:
            urls = postgres.database(service)
            service_env[service] = {
                "TESSERA_DATABASE_URL": urls["database_url"],
                "TESSERA_DATABASE_OWNER_URL": urls["database_owner_url"],
            }
        bootstrap = f"127.0.0.1:{settings.kafka_port}"
        # Each service's principal, with a new password every run, and its ACLs.
        _, principals = provision_kafka(kafka_config)
        for service in SERVICES:
            service_env[service].update(principal_env(principals[service]))
        service_env["enrolment"].update(
            TESSERA_KAFKA_PROVISIONER_USERNAME=principals["provisioner"].username,
            TESSERA_KAFKA_PROVISIONER_PASSWORD=principals["provisioner"].password.get_secret_value())
        env.update(
            TESSERA_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            TESSERA_ENROLMENT_URL=f"http://127.0.0.1:{settings.enrolment_port}",
            TESSERA_DIALOGUE_URL=f"http://127.0.0.1:{settings.dialogue_port}",
            TESSERA_RIGHTS_URL=f"http://127.0.0.1:{settings.rights_port}",
            TESSERA_ANALYTICS_URL=f"http://127.0.0.1:{settings.analytics_port}",
        )
        # The rights service's keyring (the data-key wrapping keys by epoch): under the
        # run folder, never beside the PostgreSQL cluster whose data it protects.
        service_env["rights"].setdefault("TESSERA_KEYRING_PATH", str(settings.run_dir / "keys" / "rights-keyring.json"))
        bin_dir = Path(sys.executable).parent
        for service in SERVICES:
            port = getattr(settings, f"{service}_port")
            command = shutil.which(f"tessera-{service}", path=str(bin_dir)) or f"tessera-{service}"
            # One process per service: its name is its static member id, so a restart
            # takes its place in the group at once (consume.py).
            service_env[service] = {**env, **service_env[service], "TESSERA_PORT": str(port),
                                    "TESSERA_CONSUMER_INSTANCE_ID": service}
            supervise(service, lambda service=service, command=command: spawn(
                service, [command], settings.run_dir / "logs" / f"{service}.log", env=service_env[service]))
        for service in SERVICES:
            port = getattr(settings, f"{service}_port")
            if not _wait_http(port, "/readyz", 60):
                server = next(p.server for p in supervised if p.name == service)
                print(f"{service} did not become ready:\n{server.tail()}", file=sys.stderr)
                stop_all()
                return 1

        print("\nTessera is running (Ctrl-C stops everything started here; what dies is restarted):")
        for service in SERVICES:
            port = getattr(settings, f"{service}_port")
            print(f"  {service:<10} http://127.0.0.1:{port}   (API docs: /docs)")
        print(f"  console    http://127.0.0.1:{settings.enrolment_port}/console/   (the organisation's control panel;"
              " a tenant made with \"owner_email\" comes with its first owner's invitation link)")
        print(f"  app        http://127.0.0.1:{settings.enrolment_port}/app/   (the participants' app)")
        print(f"  kafka      127.0.0.1:{settings.kafka_port}   (SASL/SCRAM-SHA-512 and ACLs; administrator "
              f"'admin', password in {kafka_config.data_dir / 'admin.secret'})")
        print(f"  traces     {jaeger_config.url}   (the trace view, over Jaeger's query API /api/traces; "
              f"services export to {env['TESSERA_OTLP_ENDPOINT']})")
        print(f"  store      PostgreSQL on 127.0.0.1:{settings.store_port}, one database per service"
              f" (superuser password in {settings.run_dir / 'postgres' / 'superuser.password'})")
        print(f"  logs       {settings.run_dir / 'logs'}   (process ids in {pids})")
        if generated:
            print(f"\n  operator key (generated for this run): {env['TESSERA_OPERATOR_KEY']}")
        else:
            print("\n  operator key: the TESSERA_OPERATOR_KEY you set")
        sys.stdout.flush()
        while True:
            for process in supervised:
                process.check(time.monotonic())
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping...")
        return 0
    finally:
        # A second Ctrl-C (or uv forwarding the first) must not cut the shutdown short
        # and leave servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(prog="tessera-devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "keys", "fetch"])
    args = parser.parse_args()
    if args.command == "keys":
        for name, value in _keys().items():
            print(f"export {name}={value}")
        return
    if args.command == "fetch":
        print(ensure_kafka_jars())
        print(ensure_jaeger())
        print(server_binaries())
        return
    sys.exit(run(StackSettings()))


if __name__ == "__main__":
    main()
