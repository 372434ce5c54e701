"""A private PostgreSQL 15 cluster for ``make run``, the tests and the benchmarks.

Debian's server binaries (``postgresql-15``, in ``/usr/lib/postgresql/15/bin``, not on
PATH) run a cluster of our own under the run directory, on a free port of 127.0.0.1,
with no Unix socket and password (SCRAM) authentication. PostgreSQL refuses to run as
root; when these scripts run as root (CI does), the server runs as the unprivileged
system user ``tessera-pg``, created on first use. That user must reach the data
folder: where a parent of the run directory is closed to it (a clone under
``/root``), the cluster lives under ``/var/tmp/tessera-pg/`` instead.

Each service gets its own database, owned by ``tessera_<service>_owner`` (which runs
the migrations), and a login role ``tessera_<service>`` that owns nothing, so
row-level security applies to everything the service does (DESIGN.md §5).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import hmac
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tessera_devstack.processes import Server, free_port, spawn, wait_for_port

SUPERUSER = "tessera_admin"
SERVER_USER = "tessera-pg"


def server_binaries() -> Path:
    """Debian's versioned server folder (newest first), or ``TESSERA_PG_BIN``."""
    override = os.environ.get("TESSERA_PG_BIN")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL's server binaries were not found: install Debian's postgresql-15 package "
        "(apt-get install postgresql-15) or set TESSERA_PG_BIN to the folder holding `postgres`"
    )


def _server_account() -> tuple[int, int] | None:
    """The (uid, gid) the server runs as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True,
        )
        account = pwd.getpwnam(SERVER_USER)
    return account.pw_uid, account.pw_gid


def _reachable_by(path: Path, account: tuple[int, int]) -> bool:
    result = subprocess.run(["test", "-w", str(path), "-a", "-x", str(path)],
                            user=account[0], group=account[1], extra_groups=[], check=False)
    return result.returncode == 0


def _cluster_dir(wanted: Path, account: tuple[int, int] | None) -> Path:
    wanted.mkdir(parents=True, exist_ok=True)
    if account is None:
        return wanted
    os.chown(wanted, *account)
    if _reachable_by(wanted, account):
        return wanted
    # A parent is closed to the server's user: use a folder of its own, one per wanted path.
    base = Path("/var/tmp/tessera-pg")
    base.mkdir(mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)
    fallback = base / hashlib.sha256(str(wanted.resolve()).encode()).hexdigest()[:16]
    fallback.mkdir(mode=0o700, exist_ok=True)
    os.chown(fallback, *account)
    (wanted / "WHERE").write_text(f"this cluster lives in {fallback} (a parent here is closed to {SERVER_USER})\n")
    return fallback


@dataclass
class PostgresConfig:
    run_dir: Path
    port: int = field(default_factory=free_port)
    #: False for tests: no fsync, no synchronous commit (a crash loses the cluster,
    #: which a test session throws away anyway). Benchmarks and ``make run`` keep both.
    durable: bool = True
    max_connections: int = 300


@dataclass
class PostgresServer:
    server: Server
    port: int
    password: str
    data_dir: Path

    @property
    def superuser_url(self) -> str:
        return f"postgresql://{SUPERUSER}:{quote(self.password)}@127.0.0.1:{self.port}/postgres"

    def role_password(self, role: str) -> str:
        """Stable per cluster, so a restarted ``make run`` finds its roles as they were."""
        return hmac.new(self.password.encode(), role.encode(), hashlib.sha256).hexdigest()

    def stop(self) -> None:
        self.server.stop()

    def database(self, service: str, database: str | None = None) -> dict[str, str]:
        """See :func:`provision`; role passwords are this cluster's."""
        return provision(self.superuser_url, service, database, self.role_password)

    def discard(self) -> None:
        """Remove the cluster's files (a test session's cluster, once stopped)."""
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _literal(value: str) -> str:
    assert all(c in "0123456789abcdef" for c in value)  # hex only: safe to inline
    return f"'{value}'"


def start_postgres(config: PostgresConfig, timeout: float = 60.0) -> PostgresServer:
    binaries = server_binaries()
    account = _server_account()
    root = _cluster_dir(config.run_dir, account)
    data = root / "data"
    password_file = config.run_dir / "superuser.password"
    as_user = {"user": account[0], "group": account[1], "extra_groups": []} if account else {}
    if not (data / "PG_VERSION").exists():
        password = secrets.token_hex(24)
        if data.exists():
            shutil.rmtree(data)  # a half-made cluster from an interrupted first run
        pwfile = root / "initdb.pw"
        pwfile.write_text(password + "\n")
        if account:
            os.chown(pwfile, *account)
        try:
            subprocess.run(
                [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "--encoding=UTF8", "--no-locale", "--no-instructions"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **as_user,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        password_file.write_text(password)
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    settings = [
        "listen_addresses=127.0.0.1", f"port={config.port}", "unix_socket_directories=",
        f"max_connections={config.max_connections}", "shared_buffers=128MB",
        "log_min_messages=warning", "log_statement=none",
    ]
    if not config.durable:
        settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    argv = [str(binaries / "postgres"), "-D", str(data)]
    for setting in settings:
        argv += ["-c", setting]
    server = spawn("postgres", argv, config.run_dir / "postgres.log", port=config.port,
                   user=account[0] if account else None, group=account[1] if account else None)
    server.stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for clients
    wait_for_port(server, config.port, timeout)
    postgres = PostgresServer(server, config.port, password, data)
    _wait_until_accepting(postgres, timeout)
    return postgres


def _wait_until_accepting(postgres: PostgresServer, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(postgres.superuser_url, connect_timeout=3):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline or postgres.server.process.poll() is not None:
                postgres.stop()
                raise RuntimeError(f"PostgreSQL did not accept connections:\n{postgres.server.tail()}") from None
            time.sleep(0.2)


def provision(superuser_url: str, service: str, database: str | None = None,
              role_password: Callable[[str], str] | None = None) -> dict[str, str]:
    """Create ``database`` (default ``tessera_<service>``) for ``service`` if it is
    missing, with the service's two roles: ``tessera_<service>_owner`` owns the
    database and runs the migrations (BYPASSRLS, for the few SECURITY DEFINER lookups
    that cross tenants), ``tessera_<service>`` is what the service connects as and owns
    nothing. Returns the service's settings ``database_url`` and ``database_owner_url``."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    database = database or f"tessera_{service}"
    role_password = role_password or (lambda role: hmac.new(superuser_url.encode(), role.encode(),
                                                            hashlib.sha256).hexdigest())
    app_role, owner_role = f"tessera_{service}", f"tessera_{service}_owner"
    with psycopg.connect(superuser_url, autocommit=True) as connection:
        for role in (owner_role, app_role):
            if not connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                bypass = "BYPASSRLS " if role == owner_role else ""
                with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                    connection.execute(f'CREATE ROLE "{role}" LOGIN {bypass}PASSWORD {_literal(role_password(role))}')
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            connection.execute(f'CREATE DATABASE "{database}" OWNER "{owner_role}"')
            connection.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
            connection.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO "{app_role}", "{owner_role}"')
    info = conninfo_to_dict(superuser_url)
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    with psycopg.connect(superuser_url, dbname=database, autocommit=True) as connection:
        # Whatever the owner's migrations create, the service's role may read and write
        # rows of (a migration narrows that where a table is append-only), never alter.
        connection.execute(f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner_role}" IN SCHEMA public '
                           f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{app_role}"')
        connection.execute(f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner_role}" IN SCHEMA public '
                           f'GRANT USAGE, SELECT ON SEQUENCES TO "{app_role}"')
        connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")

    def url(role: str) -> str:
        return f"postgresql://{role}:{quote(role_password(role))}@{host}:{port}/{database}"

    return {"database_url": url(app_role), "database_owner_url": url(owner_role)}
