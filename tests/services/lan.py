"""Several hosts on one machine: network namespaces joined by veth pairs to a bridge (root only).

Each host is a namespace with one interface, ``eth0``, at 10.77.0.N/24; the bridge lives in a
namespace of its own, so nothing is added to the machine's own network (no interface, address or
route outside the namespaces made here). Names carry this process's PID, so two test runs on one
machine do not collide. ``close`` (for finally blocks) kills, by PID, whatever still runs in these
namespaces (only processes this test started can run there) and deletes them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def unavailable() -> str | None:
    """Why network namespaces cannot be built here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces exist on Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the suite as root)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"fl{os.getpid()}-probe"
    added = _ip("netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"`ip netns add` fails here ({added.stderr.strip()})"
    try:
        bridge = _ip("-n", probe, "link", "add", "br0", "type", "bridge", check=False)
        if bridge.returncode != 0:
            return f"no bridge devices here ({bridge.stderr.strip()})"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a program on this host."""
        return ["ip", "netns", "exec", self.namespace]


class Lan:
    """A bridge and the hosts attached to it."""

    def __init__(self) -> None:
        self.tag = f"fl{os.getpid()}"
        self.switch = f"{self.tag}-switch"
        self.hosts: dict[str, Host] = {}
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def add(self, name: str) -> Host:
        """A new host ``name`` (at most 15 characters), attached to the bridge."""
        host = Host(name, f"{self.tag}-{name}", f"{SUBNET}.{len(self.hosts) + 1}")
        _ip("netns", "add", host.namespace)
        self.hosts[name] = host
        _ip("link", "add", "eth0", "netns", host.namespace, "type", "veth", "peer", "name", name, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", name, "master", "br0")
        _ip("-n", self.switch, "link", "set", name, "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        return host

    def link_down(self, host: Host) -> None:
        """Unplug the host: connections fail at once (IPv4 keeps the address while the link is down)."""
        _ip("-n", host.namespace, "link", "set", "eth0", "down")

    def link_up(self, host: Host) -> None:
        _ip("-n", host.namespace, "link", "set", "eth0", "up")

    def close(self) -> None:
        for namespace in [*(h.namespace for h in self.hosts.values()), self.switch]:
            listed = _ip("netns", "pids", namespace, check=False)
            for pid in listed.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", namespace, check=False)
        self.hosts.clear()
