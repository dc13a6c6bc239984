"""Commands: ``relay serve`` — record gasless parties' signed updates in batches, paying their gas.

The relay is a long-lived service like ``node run`` (node.services): its key signs and pays for
the ``submitUpdates`` transactions, the workspace's store is where it checks each update's blob,
and SIGTERM/SIGINT stop it after the batch in flight (queued updates are sent first).
"""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from ledger.ipfs.serving import ServerLimits
from ledger.ipfs.store import open_store
from ledger.workspace import Workspace
from node.cli._common import RpcOption, WorkdirOption, handle_errors
from node.cli.services_cmd import LogJsonOption, MaxOutageOption, federation_connector, log_stopped_early, service_runtime
from node.services.lock import service_lock

DEFAULT_PORT = 8650
DEFAULT_BATCH_SIZE = 64
DEFAULT_MAX_WAIT_S = 2.0
DEFAULT_RATE_LIMIT = 10.0  # requests per second from one address (bursts of 10 s' worth)
DEFAULT_GLOBAL_RATE_LIMIT = 100.0


def register(app: typer.Typer) -> None:
    """Add the ``relay`` group (``relay serve``) to the app."""
    relay_app = typer.Typer(help="The relayer: record parties' signed updates in batches, so parties need no gas.",
                            no_args_is_help=True)
    app.add_typer(relay_app, name="relay")

    @relay_app.command("serve")
    @handle_errors
    def serve(
        key: Annotated[str, typer.Option("--key", help="The relayer's key, which pays the gas: a name under \\[keys] or a keystore file.")],
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: a free one, logged).")] = DEFAULT_PORT,
        host: Annotated[str, typer.Option("--host", help="Address to listen on (it has no authentication).")] = "127.0.0.1",
        batch_size: Annotated[int, typer.Option("--batch-size", help="Most updates per transaction (1 to the contract's 256).")] = DEFAULT_BATCH_SIZE,
        max_wait: Annotated[float, typer.Option("--max-wait", min=0.0, help="Seconds the oldest queued update waits for a fuller batch.")] = DEFAULT_MAX_WAIT_S,
        rate_limit: Annotated[float, typer.Option("--rate-limit", help="Updates per second taken from one client address (bursts of 10 s' worth); more are answered 429.")] = DEFAULT_RATE_LIMIT,
        global_rate_limit: Annotated[float, typer.Option("--global-rate-limit", help="Updates per second taken from all clients together; more are answered 429.")] = DEFAULT_GLOBAL_RATE_LIMIT,
        header_timeout: Annotated[float, typer.Option("--header-timeout", help="Seconds a request's headers may take to arrive.")] = 10.0,
        idle_timeout: Annotated[float, typer.Option("--idle-timeout", help="Seconds a connection may wait idle, or a request stall.")] = 60.0,
        max_connections: Annotated[int, typer.Option("--max-connections", help="Connections served at once (each waiting party holds one); more are answered 503.")] = 512,
        max_outage: MaxOutageOption = None,
        log_json: LogJsonOption = False,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
    ) -> None:
        """Take signed updates on POST /updates, check them, send them in batches, answer each party
        with its transaction and block or the reason it was refused; GET /health shows the counts."""
        from ledger.chain.connection import require_gas_money
        from ledger.chain.keys import load_account
        from node.services.relay_service import RateLimits, Relay, check_batch_size, make_server

        check_batch_size(batch_size)  # refused before anything starts
        rate_limits = RateLimits(per_address=rate_limit, total=global_rate_limit).checked()
        limits = ServerLimits(header_timeout_s=header_timeout, idle_timeout_s=idle_timeout,
                              max_connections=max_connections).checked()
        workspace = Workspace.find(workdir)
        account = load_account(workspace, key)
        store = open_store(workspace)
        with service_lock(workspace.journal_dir, role="relay", address=account.address, command="fedledger relay serve"), \
                service_runtime("relay", actor=account.address, log_json=log_json, metrics_port=None,
                                metrics_host=host, max_outage=max_outage) as rt:
            federation = rt.retrier.until_success(federation_connector(workspace, rpc, account))
            if federation is None:
                log_stopped_early(rt)
                return
            require_gas_money(federation.w3, account.address)
            relay = Relay(federation=federation, store=store, batch_size=batch_size, max_wait_s=max_wait, log=rt.log,
                          rate_limits=rate_limits)
            server = make_server(relay, port=port, host=host, limits=limits)  # a port in use is refused before anything runs
            relay.start()
            worker = threading.Thread(target=server.serve_forever, name="relay-http", daemon=True)
            worker.start()
            url = f"http://{host}:{server.server_address[1]}"
            rt.log.info("listening", f"relaying for {federation.address} at {url} (batches of up to {batch_size}, "
                        f"{max_wait:g} s wait); POST /updates, GET /health.", url=url, port=server.server_address[1],
                        contract=federation.address, batch_size=batch_size, max_wait=max_wait)
            try:
                rt.stop.wait(float("inf"))
            finally:
                relay.close()  # the queued updates are sent and answered first
                server.shutdown()
                server.server_close()
                rt.log.info("stopped", f"stopped on {rt.stop.reason or 'exit'}: {relay.counts.recorded} update(s) "
                            f"recorded in {relay.counts.batches} batch(es).", signal=rt.stop.reason)
