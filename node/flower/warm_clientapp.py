"""A long-lived ClientApp process beside a SuperNode started with ``--isolation process``.

    python -m node.flower.warm_clientapp --runtime-api-address 127.0.0.1:9094 --insecure [--parent-pid PID]
    (or --root-certificates CA.pem instead of --insecure, for a Runtime API served over TLS)

Flower 1.42's ``flwr-clientapp`` handles one message and exits, and a SuperNode in its default
``--isolation subprocess`` starts a SuperExec that launches one such process per message: every
train message pays for a fresh interpreter importing torch, web3, flwr and the app (about 8 s of
CPU per party per round on these machines), and a keystore is decrypted again each time. With
``--isolation process`` the SuperNode starts no SuperExec and waits for one outside it; this
process takes that place for one SuperNode. It asks the SuperNode's Runtime API for ClientApp
tasks (``AcquireTask``) and runs each *here*, with Flower's own steps in Flower's order: pull the
message, the context and the FAB; install the FAB; load the app's ClientApp; call it; push the
reply, then the context and the status. A ClientApp that raises replies with Flower's error
message (the same code and reason ``flwr-clientapp`` sends) and this process goes on.

What stays warm between messages: the imports, the loaded ClientApp, and whatever the app caches
at module level (fedledger's ``party_ledger``: the chain connection and the decrypted key, kept
for the rest of a run and opened again when a new run starts). As in Flower's simulation engine,
messages then share one interpreter: they are handled one at a time, and a run whose FAB differs
from the previous one's gets its app's modules imported afresh, never the old code.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import sys
import time
from logging import ERROR, INFO, WARNING
from pathlib import Path

from flwr.app import Message
from flwr.app.error import Error
from flwr.cli.install import install_from_fab
from flwr.clientapp.client_app import ClientApp, LoadClientAppError
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.config import get_project_dir
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest, SendTaskHeartbeatRequest  # pylint: disable=E0611
from flwr.supercore import log
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.protobuf.client import ProtobufClientInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from node.flower.fab_guard import note_run_fab
import node.flower.client  # noqa: F401 - what fedledger ClientApps call (torch, web3 with it), imported before the first message
import node.flower.connection  # the ledger's side of every fedledger ClientApp, imported once, before the first message

POLL_SECONDS = 0.1  # between two AcquireTask calls to a SuperNode on the same host while it has no task


def _runtime_client(address: str, *, certificates: str | None, component: str, token: str | None = None) -> RuntimeHttpClient:
    """A client of the SuperNode's Runtime API: plain HTTP when ``certificates`` is None, else HTTPS
    verified against that CA file."""
    interceptors: list[ProtobufClientInterceptor] = [RuntimeVersionHttpInterceptor(component_name=component)]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(server_address=address, insecure=certificates is None,
                                                 root_certificates=certificates, interceptors=interceptors,
                                                 retry_invoker=make_simple_http_retry_invoker())


def _heartbeat(client: RuntimeHttpClient, token: str) -> HeartbeatSender:
    """Flower's task heartbeat, except that a task the SuperNode gave up on is logged, not ended with
    SIGINT: here that signal would end every later message's process too."""
    request = SendTaskHeartbeatRequest()

    def beat() -> bool:
        try:
            answer = client.SendTaskHeartbeat(request)
        except Exception:  # pylint: disable=broad-exception-caught - a missed beat is retried
            return False
        if not answer.success:
            log(WARNING, "the SuperNode no longer expects task %s; its reply will be refused", token[:6])
        return True

    return HeartbeatSender(beat)


class _LoadedApps:
    """The ClientApp of the last FAB run here; another FAB's modules replace its modules."""

    def __init__(self) -> None:
        self._fab: tuple[str, str, str] | None = None
        self._folder: Path | None = None
        self._app: ClientApp | None = None
        self._run_id: int | None = None

    def for_task(self, run_id: int, fab_id: str, fab_version: str, fab_hash: str, fab_content: bytes) -> ClientApp:
        if run_id != self._run_id:
            node.flower.connection.forget_ledgers()  # a new run: the workspace and keys are read again
            self._run_id = run_id
        fab = (fab_id, fab_version, fab_hash)
        if fab != self._fab or self._app is None:
            install_from_fab(fab_content, skip_prompt=True)
            self._forget_modules()
            self._app = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)(*fab)
            self._fab, self._folder = fab, get_project_dir(*fab).resolve()
        return self._app

    def _forget_modules(self) -> None:
        if self._folder is None:
            return
        for name, module in list(sys.modules.items()):
            source = getattr(module, "__file__", None)
            if source and Path(source).resolve().is_relative_to(self._folder):
                del sys.modules[name]
        while str(self._folder) in sys.path:
            sys.path.remove(str(self._folder))


def run_task(address: str, token: str, *, certificates: str | None, apps: _LoadedApps) -> None:
    """One ClientApp task, as ``flwr-clientapp`` runs it, in this process."""
    client = _runtime_client(address, certificates=certificates, component="flwr-clientapp", token=token)
    heartbeat = _heartbeat(client, token)
    heartbeat.start()
    message = context = reply = None
    status, details = SubStatus.FAILED, "ClientApp task failed due to unknown reason"
    started = time.monotonic()
    try:
        message, context, run, fab = pull_task_input(client)
        # The code actually installed, for the check against the agreement's Flower app (node.flower.fab_guard).
        note_run_fab(run.run_id, hashlib.sha256(fab.content).hexdigest())
        app = apps.for_task(run.run_id, run.fab_id, run.fab_version, fab.hash_str, fab.content)
        reply = app(message=message, context=context)
        status, details = SubStatus.COMPLETED, ""
    except Exception as error:  # pylint: disable=broad-exception-caught - the reply says what went wrong
        code, details = ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"{type(error)}:<'{error}'>"
        if isinstance(error, LoadClientAppError):
            code, details = ErrorCode.LOAD_CLIENT_APP_EXCEPTION, "An exception was raised when attempting to load `ClientApp`"
        log(ERROR, "ClientApp raised an exception", exc_info=error)
        if message is not None:
            reply = Message(Error(code=code, reason=details), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
        except Exception as error:  # pylint: disable=broad-exception-caught
            log(ERROR, "Failed to push reply message", exc_info=error)
        push_task_output(client=client, context=context, sub_status=status, details=details)
        heartbeat.stop()
        client.close()
        log(INFO, "fedledger: ClientApp task %s in %.2f s", status, time.monotonic() - started)


def _wait_for_listener(address: str, poll_seconds: float) -> None:
    """Until something listens at ``address`` (a SuperNode started beside this process is still importing)."""
    host, _, port = address.rpartition(":")
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
            return
        except OSError:
            time.sleep(poll_seconds)


def serve(address: str, *, certificates: str | None = None, poll_seconds: float = POLL_SECONDS) -> None:
    """Run the SuperNode's ClientApp tasks at ``address`` one after another, until this process is ended
    (``certificates``: the CA file of a Runtime API served over TLS; None: plain HTTP)."""
    _wait_for_listener(address, poll_seconds)
    client = _runtime_client(address, certificates=certificates, component="SuperExec")
    apps = _LoadedApps()
    log(INFO, "fedledger: a long-lived ClientApp process for the SuperNode at %s", address)
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
    try:
        while True:
            acquired = client.AcquireTask(request)
            if acquired.HasField("task") and acquired.token:
                run_task(address, acquired.token, certificates=certificates, apps=apps)
            else:
                time.sleep(poll_seconds)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", default="127.0.0.1:9094",
                        help="the SuperNode's Runtime API, host:port (its --host and --port)")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP to the Runtime API (a SuperNode without --ssl-certfile)")
    parser.add_argument("--root-certificates", help="the CA file that verifies a Runtime API served over TLS")
    parser.add_argument("--parent-pid", type=int, help="end when this process (the SuperNode) ends")
    parser.add_argument("--poll-seconds", type=float, default=POLL_SECONDS)
    args = parser.parse_args(argv)
    if args.insecure == (args.root_certificates is not None):
        parser.error("give either --insecure (plain HTTP) or --root-certificates FILE (TLS), as the SuperNode's Runtime API is served.")
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    try:
        serve(args.runtime_api_address, certificates=args.root_certificates, poll_seconds=args.poll_seconds)
    except KeyboardInterrupt:  # SIGINT, or the SuperNode ended (the parent monitor raises SIGINT)
        pass


if __name__ == "__main__":
    main()
