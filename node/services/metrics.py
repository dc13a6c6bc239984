"""Prometheus metrics of one service process (prometheus-client), served with ``--metrics-port``.

Each process keeps its own registry, so tests and benchmarks that run several services in one
interpreter do not mix their counts. The endpoint listens on 127.0.0.1 unless told otherwise:
like the rest of fedledger's servers it has no authentication. It keeps the header and idle
timeouts and the connection cap of :mod:`ledger.ipfs.serving` (a scraper needs one connection).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from ledger.errors import InvalidInputError
from ledger.ipfs.serving import LimitedHandlerMixin, LimitedServerMixin, ServerLimits, stderr_notes

METRICS_LIMITS = ServerLimits(header_timeout_s=10.0, idle_timeout_s=30.0, max_connections=32)


class _MetricsServer(LimitedServerMixin, ThreadingWSGIServer):
    daemon_threads = True


class _MetricsServer6(_MetricsServer):
    address_family = socket.AF_INET6


class _MetricsHandler(LimitedHandlerMixin, WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - a line per scrape is noise
        pass


class ServiceMetrics:
    """Counters every service shares; each service increments the ones that fit what it does."""

    def __init__(self, service: str, *, actor: str | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.service = service
        self.info = Info("fedledger_service", "Which fedledger service this process runs, and as whom.", registry=r)
        self.set_actor(actor)
        self.rounds_seen = Counter("fedledger_rounds_seen", "Open rounds this service has seen.", registry=r)
        self.submissions = Counter("fedledger_submissions", "Updates this party recorded on chain.", registry=r)
        self.rounds_finalized = Counter("fedledger_rounds_finalized", "Rounds this aggregator finalized.", registry=r)
        self.rounds_cancelled = Counter("fedledger_rounds_cancelled", "Rounds this service cancelled below their minimum.", registry=r)
        self.rounds_opened = Counter("fedledger_rounds_opened", "Rounds this coordinator opened.", registry=r)
        self.gas_used = Counter("fedledger_gas_used", "Gas used by this service's transactions.", registry=r)
        self.reorgs = Counter("fedledger_reorgs", "Recorded actions of this service that a reorganization removed.", registry=r)
        self.retries = Counter("fedledger_retries", "Steps retried after a transient chain or store failure.", registry=r)
        self.last_success = Gauge(
            "fedledger_last_success_timestamp_seconds", "Unix time at which the last step completed.", registry=r
        )

    def set_actor(self, actor: str | None) -> None:
        self.info.info({"service": self.service, "actor": actor or ""})

    def serve(self, port: int, *, host: str = "127.0.0.1", limits: ServerLimits = METRICS_LIMITS,
              note: Callable[[str], None] | None = None) -> WSGIServer:
        """Serve ``/metrics`` on ``host:port`` (0: a free port, see ``server_port``) from a daemon thread;
        ``note`` gets its one-line notes (stderr by default)."""
        limits = limits.checked()
        server_class = _MetricsServer6 if ":" in host else _MetricsServer
        try:
            server = make_server(host, port, make_wsgi_app(self.registry), server_class, handler_class=_MetricsHandler)
        except OSError as error:  # the port is taken, or the address is not this machine's
            raise InvalidInputError(
                f"cannot serve metrics on {host}:{port} ({error.strerror or error}); choose a free --metrics-port "
                "(0 picks one) or another --metrics-host."
            ) from None
        server.init_limits(limits, note or stderr_notes(f"fedledger {self.service} metrics"))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True).start()
        return server
