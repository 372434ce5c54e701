"""Jaeger, the trace view ``make run`` starts for SRE (issue 16).

Built once from the Go module proxy (``github.com/jaegertracing/jaeger/cmd/jaeger``,
v1.76.0, pinned with every dependency in ``deploy/local/jaeger/go.mod`` and ``go.sum``)
into ``.cache/jaeger/``, like Kafka's jars. It runs as Jaeger's all-in-one with traces in
memory, receiving OTLP over HTTP and answering its UI and query API, every endpoint on
127.0.0.1; the collector's own telemetry port is turned off.

Jaeger's UI is not part of the Go module (its assets are built from the jaeger-ui
project, which no package registry this project reaches ships). So Jaeger serves, at its
query port, a small trace view of this project's own (``trace_view/``: find traces by
service and operation, then a waterfall of one trace's spans with their attributes) over
its query API (``/api/traces``, ``/api/services``), which a Jaeger UI or Grafana's Jaeger
data source elsewhere can also be pointed at.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tessera_devstack.processes import CACHE, REPO, Server, free_port, spawn, wait_for_port

MODULE = REPO / "deploy" / "local" / "jaeger"
PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"
JAEGER_BIN = CACHE / "jaeger" / "jaeger"


def ensure_jaeger() -> Path:
    """The Jaeger binary, built now if it is not in the cache yet (minutes, once)."""
    if JAEGER_BIN.exists():
        return JAEGER_BIN
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("Go is needed once to build Jaeger (the trace view): install Debian's golang-go")
    JAEGER_BIN.parent.mkdir(parents=True, exist_ok=True)
    partial = JAEGER_BIN.with_suffix(".partial")
    print("building Jaeger from the Go module proxy (once; a few minutes)...", flush=True)
    # go.sum pins every module; Go's own caches (module and build) make a second build,
    # in another clone, a matter of linking.
    subprocess.run([go, "build", "-o", str(partial), PACKAGE], cwd=MODULE, check=True)
    partial.rename(JAEGER_BIN)
    return JAEGER_BIN


@dataclass
class JaegerConfig:
    run_dir: Path
    #: The UI and its HTTP query API (``/api/traces``).
    query_port: int = field(default_factory=free_port)
    #: OTLP over HTTP: services send to ``http://127.0.0.1:<port>/v1/traces``.
    otlp_port: int = field(default_factory=free_port)
    query_grpc_port: int = field(default_factory=free_port)
    max_traces: int = 100_000

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}/v1/traces"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"


#: The page Jaeger serves at its query port: Tessera's trace view over its API.
TRACE_VIEW = Path(__file__).parent / "trace_view"


def _config(config: JaegerConfig) -> str:
    return f"""\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {config.max_traces}
  jaeger_query:
    # Jaeger's own query traces would go to an OTLP collector on :4317 that is not there.
    enable_tracing: false
    storage:
      traces: memstore
    ui:
      assets_path: {TRACE_VIEW}
    http:
      endpoint: 127.0.0.1:{config.query_port}
    grpc:
      endpoint: 127.0.0.1:{config.query_grpc_port}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{config.otlp_port}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def start_jaeger(config: JaegerConfig, timeout: float = 60.0) -> Server:
    binary = ensure_jaeger()
    config.run_dir.mkdir(parents=True, exist_ok=True)
    path = config.run_dir / "jaeger.yaml"
    path.write_text(_config(config))
    server = spawn("jaeger", [str(binary), "--config", str(path)], config.run_dir / "jaeger.log",
                   port=config.query_port)
    wait_for_port(server, config.query_port, timeout)
    wait_for_port(server, config.otlp_port, timeout)
    return server
